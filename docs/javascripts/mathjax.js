// MathJax 2.7, served from the site (docs/hooks/mathjax.py): the maths that
// pymdownx.arithmatex (generic mode) wraps in \( \) and \[ \].
window.MathJax = {
  tex2jax: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  messageStyle: "none",
};
