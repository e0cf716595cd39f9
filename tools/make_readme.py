"""Write README.md from nbs/index.ipynb (the docs home), the way `nbdev-readme` would without Quarto.

Markdown cells are copied; code cells become ```python blocks, without nbdev directives (`#| ...`);
cells marked `#| hide` are left out. Run by `make test` (sync check) and by hand after editing index.ipynb.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    out = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = src.splitlines()
        directives = [l for l in lines if l.startswith("#|")]
        if any(d.split()[1:2] in (["hide"], ["exporti"]) for d in directives): continue
        body = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
        if not body: continue
        out.append(body if cell["cell_type"] == "markdown" else f"```python\n{body}\n```")
    header = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n"
    return header + "\n\n".join(out) + "\n"

if __name__ == "__main__":
    target = root / "README.md"
    text = render(root / "nbs" / "index.ipynb")
    if "--check" in sys.argv:
        sys.exit(0 if target.exists() and target.read_text() == text else "README.md is out of date: run tools/make_readme.py")
    target.write_text(text)
    print(f"wrote {target.relative_to(root)}")
