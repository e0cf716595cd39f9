"""The course's shape, checked on the notebooks themselves (no kernel, no imports of the library).

Two rules, written down here and in index.ipynb's lesson section:

1. **No forward references without a pointer.** A lesson may import a module that a *later* lesson builds (in the course
   order, the sorted notebook names: 07 < 07b < 08) only if it says where it comes from: a line of the lesson's opening
   cell ("What you need from earlier lessons"), or a comment on the import line itself, must name the module
   (`vivit_edu.inference`) and the lesson that builds it (`lesson 16`). Every `import` / `from ... import` of a
   `vivit_edu.*` module in any code cell counts, exported or not, at any depth (imports inside functions too).
2. **Every lesson opens and closes the same way.** An opening cell near the top with "**What you will learn**" and
   "**What you need from earlier lessons**"; a `## Summary`, then `## Exercises` with numbered exercises; and as the
   last cell a `## Answers` section collapsed in `<details>`, with one numbered answer per exercise.
"""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
LEARN, NEED = "**What you will learn**", "**What you need from earlier lessons**"


def lessons() -> list[Path]:
    "Lesson notebooks in course order (numbered names, sorted as nbdev sorts them)."
    return sorted(p for p in NBS.glob("*.ipynb") if re.match(r"\d", p.name))


def label(nb_path: Path) -> str:
    "The lesson's number as the course writes it: '07', '07b', '16'."
    return re.match(r"(\d+[a-z]?)_", nb_path.name).group(1)


def cells(nb_path: Path) -> list[dict]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return [{**c, "source": "".join(c["source"]) if isinstance(c["source"], list) else c["source"]} for c in nb["cells"]]


def module_of(nb_path: Path) -> str | None:
    "The module a lesson exports to (`#| default_exp`), as a dotted `vivit_edu.` name."
    for c in cells(nb_path):
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", c["source"], re.M)
        if m: return "vivit_edu." + m.group(1)
    return None


def module_lessons() -> dict[str, Path]:
    return {m: p for p in lessons() if (m := module_of(p))}


def python_source(src: str) -> str:
    "A code cell as plain Python: nbdev directives and IPython magics and shell lines blanked (line numbers kept)."
    return "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines())


def vivit_imports(src: str) -> list[tuple[str, int]]:
    "(module, line number) of every import of a `vivit_edu.*` module in a code cell."
    out = []
    for node in ast.walk(ast.parse(python_source(src))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vivit_edu."):
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("vivit_edu.")]
    return out


def opening(nb_path: Path) -> str | None:
    "The opening cell (what you will learn / need), looked for among the first five cells."
    return next((c["source"] for c in cells(nb_path)[:5] if c["cell_type"] == "markdown" and LEARN in c["source"]), None)


def names_source(text: str, module: str, lesson: str) -> bool:
    "Does a line of `text` name `module` and `lesson <lesson>`?"
    return any(module in line and re.search(rf"\blessons? (?:[\w ,]*\b)?{lesson}\b", line, re.I) for line in text.splitlines())


def forward_references(nb_path: Path) -> list[str]:
    "Imports of later lessons' modules that the lesson does not point to."
    order = [label(p) for p in lessons()]
    mine, where = order.index(label(nb_path)), module_lessons()
    head, bad = opening(nb_path) or "", []
    for i, c in enumerate(cells(nb_path)):
        if c["cell_type"] != "code": continue
        lines = c["source"].splitlines()
        for mod, lineno in vivit_imports(c["source"]):
            src = where.get(mod) or next((p for m, p in where.items() if mod.startswith(m + ".")), None)
            if src is None or order.index(label(src)) <= mine: continue
            if names_source(lines[lineno - 1], "", label(src)) or names_source(head, mod, label(src)): continue
            bad.append(f"{nb_path.name} cell {i}: imports {mod} (lesson {label(src)}) without saying where it comes from")
    return bad


def numbered(text: str) -> list[int]:
    "The numbers of a markdown list's top-level items ('1. ...')."
    return [int(m.group(1)) for m in re.finditer(r"^(\d+)\.\s", text, re.M)]


def structure_problems(nb_path: Path) -> list[str]:
    cs, name, bad = cells(nb_path), nb_path.name, []
    head = opening(nb_path)
    if head is None: bad.append(f"{name}: no opening cell with {LEARN!r} among its first five cells")
    elif NEED not in head: bad.append(f"{name}: the opening cell lacks {NEED!r}")
    md = "\n".join(c["source"] for c in cs if c["cell_type"] == "markdown")
    s, e = md.find("## Summary"), md.find("## Exercises")
    if s < 0 or e < s: bad.append(f"{name}: needs '## Summary' followed by '## Exercises'")
    last = cs[-1]
    if last["cell_type"] != "markdown" or not last["source"].lstrip().startswith("## Answers"):
        bad.append(f"{name}: the last cell must be the '## Answers' section"); return bad
    ans = last["source"]
    if not ("<details>" in ans and "</details>" in ans and ans.index("<details>") < ans.index("</details>")):
        bad.append(f"{name}: the answers must be collapsed in <details>...</details>")
    if e >= 0:
        exercises = numbered(md[e:md.find("## Answers", e) if "## Answers" in md[e:] else None].split("\n## ", 1)[0])
        if not exercises: bad.append(f"{name}: no numbered exercises")
        elif numbered(ans) != exercises: bad.append(f"{name}: exercises {exercises} but answers {numbered(ans)}")
    return bad


@pytest.mark.parametrize("nb_path", lessons(), ids=lambda p: p.stem)
def test_no_unannounced_forward_imports(nb_path):
    assert forward_references(nb_path) == []


@pytest.mark.parametrize("nb_path", lessons(), ids=lambda p: p.stem)
def test_lesson_opens_and_closes_the_same_way(nb_path):
    assert structure_problems(nb_path) == []


# --- the checkers themselves, on small made-up notebooks: each rule can fail --------------------------------------

def _write(tmp_path, name, *cells_):
    nb = {"cells": [{"cell_type": t, "id": f"c{i}", "metadata": {}, "source": s, **({"outputs": [], "execution_count": None}
                     if t == "code" else {})} for i, (t, s) in enumerate(cells_)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / name; p.write_text(json.dumps(nb)); return p


def test_import_finder_sees_nested_and_plain_imports():
    src = "#| export\nimport os\nfrom vivit_edu.train import fit\ndef f():\n    import vivit_edu.inference as inf\n%time x = 1"
    assert vivit_imports(src) == [("vivit_edu.train", 3), ("vivit_edu.inference", 5)]


def test_pointer_rule_on_examples():
    assert names_source("- From a later lesson: `vivit_edu.inference` (lesson 16): `Predictor`.", "vivit_edu.inference", "16")
    assert names_source("- Lessons 15 and 16: `vivit_edu.distributed`, `vivit_edu.inference`", "vivit_edu.inference", "16")
    assert not names_source("- `vivit_edu.inference` is explained later.", "vivit_edu.inference", "16")
    assert not names_source("- Lesson 16: `vivit_edu.inference`", "vivit_edu.inference", "1")     # 16 is not lesson 1
    assert names_source("from vivit_edu.inference import Predictor  # lesson 16 builds it", "", "16")


def test_structure_checker_finds_what_is_missing(tmp_path):
    good = _write(tmp_path, "03_x.ipynb", ("markdown", "# T"), ("markdown", f"{LEARN}\n\n- a\n\n{NEED}\n\n- none"),
                  ("markdown", "## Summary\n\n- s\n\n## Exercises\n\n1. one\n2. two"),
                  ("markdown", "## Answers\n\n<details>\n<summary>Answers</summary>\n\n1. a\n2. b\n\n</details>"))
    assert structure_problems(good) == []
    no_answer2 = _write(tmp_path, "04_x.ipynb", *[("markdown", json.loads(good.read_text())["cells"][i]["source"]) for i in range(3)],
                        ("markdown", "## Answers\n\n<details>\n\n1. a\n\n</details>"))
    assert any("exercises [1, 2] but answers [1]" in s for s in structure_problems(no_answer2))
    open_answers = _write(tmp_path, "05_x.ipynb", ("markdown", f"{LEARN}\n{NEED}"), ("markdown", "## Summary\n## Exercises\n1. a"),
                          ("markdown", "## Answers\n\n1. a"))
    assert any("<details>" in s for s in structure_problems(open_answers))
    no_opening = _write(tmp_path, "06_x.ipynb", ("markdown", "# T"), ("markdown", "## Summary\n## Exercises\n1. a"),
                        ("markdown", "## Answers\n<details>\n1. a\n</details>"))
    assert any("no opening cell" in s for s in structure_problems(no_opening))
