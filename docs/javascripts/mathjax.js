// MathJax 2.7, served from the site (docs/hooks/mathjax.py): the maths that
// pymdownx.arithmatex (generic mode) wraps in \( \) and \[ \]. The copy ships the
// STIX-Web fonts and the HTML-CSS output only (as Jupyter serves it), so those are
// the ones asked for.
window.MathJax = {
  tex2jax: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  "HTML-CSS": { availableFonts: [], webFont: "STIX-Web", imageFont: null },
  "fast-preview": { disabled: true },
  messageStyle: "none",
};
