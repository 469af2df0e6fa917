"""The documentation's links resolve, and README.md stays a front page.

README.md is the front page; the write-ups live in docs/results/<experiment>.md and
docs/ablations/<sweep>/. These tests keep that structure navigable: every relative link (and image)
in README.md and under docs/ points to a file or folder that exists, every results page is linked
from somewhere, and README.md stays short enough to read as a front page.
"""

from __future__ import annotations

import os
import pathlib
import re

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, "README.md")
DOCS = os.path.join(REPO_ROOT, "docs")
RESULTS = os.path.join(DOCS, "results")
MAX_README_LINES = 250

# `[text](target)` and `![alt](target)`, with an optional "title" after the target. Link text may
# hold one level of brackets; the target holds no spaces or parentheses.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[str]:
  """Returns README.md and every .md file under docs/, as absolute paths, sorted."""
  files = [README]
  for directory, _, names in os.walk(DOCS):
    files.extend(os.path.join(directory, name) for name in names if name.endswith(".md"))
  return sorted(files)


def relative_links(text: str) -> list[str]:
  """Returns the targets of the markdown links and images in `text` that point into the repository.

  Code blocks and code spans are skipped (their brackets are code, not links), as are external
  links (http, https, mailto) and pure `#anchor` links; an `#anchor` suffix is stripped.

  Args:
    text: markdown source.

  Returns:
    The link targets, in order of appearance, each a path relative to the file's folder.
  """
  text = _CODE_SPAN.sub("", _FENCE.sub("", text))
  targets = []
  for match in _LINK.finditer(text):
    target = match.group(1)
    if target.startswith(_EXTERNAL) or target.startswith("#"):
      continue
    target = target.split("#", 1)[0]
    if target:
      targets.append(target)
  return targets


def broken_links(path: str) -> list[str]:
  """Returns the relative link targets in the markdown file `path` that do not exist."""
  with open(path, encoding="utf-8") as f:
    targets = relative_links(f.read())
  folder = os.path.dirname(path)
  return [t for t in targets if not os.path.exists(os.path.normpath(os.path.join(folder, t)))]


def test_relative_links_resolve() -> None:
  """Every relative link and image in README.md and docs/**/*.md points to an existing path."""
  problems = []
  for path in markdown_files():
    for target in broken_links(path):
      problems.append(f"{os.path.relpath(path, REPO_ROOT)}: {target}")
  assert not problems, f"{len(problems)} broken relative link(s):\n" + "\n".join(problems)


def test_link_check_finds_a_broken_link(tmp_path: pathlib.Path) -> None:
  """The checker itself reports a missing target, and ignores anchors, external links and code."""
  (tmp_path / "there.png").write_bytes(b"")
  page = tmp_path / "page.md"
  page.write_text(
    "![ok](there.png) [ok](there.png#anchor) [web](https://example.com/x) [anchor](#top)\n"
    "`[not a link](missing_in_code.md)`\n```\n[nor this](missing_in_fence.md)\n```\n"
    "[gone](missing.md#part) ![gone too](sub/missing.png)\n",
    encoding="utf-8",
  )
  assert broken_links(str(page)) == ["missing.md", "sub/missing.png"]


def test_readme_is_a_front_page() -> None:
  """README.md stays short and keeps the two commands for a fresh machine."""
  with open(README, encoding="utf-8") as f:
    text = f.read()
  lines = text.count("\n")
  assert lines <= MAX_README_LINES, (
    f"README.md has {lines} lines (at most {MAX_README_LINES}): move write-ups to docs/results/"
  )
  for command in ("make demo", "make test"):
    assert command in text, f"README.md no longer names `{command}`"


def test_every_results_page_is_linked() -> None:
  """Every docs/results/*.md page is linked from README.md or from another docs page."""
  linked = set()
  for path in markdown_files():
    with open(path, encoding="utf-8") as f:
      targets = relative_links(f.read())
    folder = os.path.dirname(path)
    for target in targets:
      resolved = os.path.normpath(os.path.join(folder, target))
      if resolved != os.path.normpath(path):
        linked.add(resolved)
  pages = sorted(
    os.path.join(RESULTS, name) for name in os.listdir(RESULTS) if name.endswith(".md")
  )
  orphans = [
    os.path.relpath(page, REPO_ROOT) for page in pages if os.path.normpath(page) not in linked
  ]
  assert not orphans, "results pages no page links to:\n" + "\n".join(orphans)
