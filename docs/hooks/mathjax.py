"""mkdocs hook: serve MathJax from the site itself, so that the pages need no CDN.

MathJax 2.7 comes from the `jupyter-server-mathjax` package (a dev dependency, the copy
Jupyter serves offline); it is copied into `site/assets/mathjax/` after every build.
"""

from pathlib import Path
import shutil

#: What docs/javascripts/mathjax.js and mkdocs.yml ask for, relative to the copy.
NEEDED = (
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",
    "jax/output/HTML-CSS/fonts/STIX-Web",
    "fonts/HTML-CSS/STIX-Web",
)


def on_post_build(config, **kwargs):
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    missing = [name for name in NEEDED if not (source / name).exists()]
    if missing:  # another MathJax copy: the pages would show raw TeX
        raise RuntimeError(f"jupyter-server-mathjax's MathJax lacks {', '.join(missing)}")
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    shutil.copytree(source, target, dirs_exist_ok=True)
