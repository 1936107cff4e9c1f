"""mkdocs hook: serve MathJax from the site itself, so that the pages need no CDN.

MathJax 2.7 comes from the `jupyter-server-mathjax` package (a dev dependency, the copy
Jupyter serves offline); it is copied into `site/assets/mathjax/` after every build.
"""

from pathlib import Path
import shutil


def on_post_build(config, **kwargs):
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    shutil.copytree(source, target, dirs_exist_ok=True)
