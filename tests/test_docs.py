"""The docs run as written: every ```python block of a page, in order, in one namespace, so
a page whose code raises or whose asserts fail fails here."""
import re
import time
from pathlib import Path

import pytest

import funcnn as fn

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["write_your_own_layer.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(page: str) -> list[str]:
    """The page's ```python blocks, in order (the output blocks, plain ```, are not run)."""
    return BLOCK.findall((DOCS / page).read_text())


def run_blocks(page: str, blocks: list[str]) -> dict:
    """exec each block in turn in one namespace; an error names the page and the block."""
    namespace = {"__name__": f"docs_{Path(page).stem}"}
    for i, code in enumerate(blocks, 1):
        start = time.perf_counter()
        try:
            exec(compile(code, f"{DOCS / page} (python block {i})", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{page}, python block {i} fails ({type(e).__name__}: "
                                 f"{e}):\n{code}") from e
        print(f"{page}, block {i}: {time.perf_counter() - start:.2f} s")
    return namespace


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # anything a page writes lands here
    # a page's register_layer must not outlive its test
    monkeypatch.setattr(fn.descriptions, "LAYERS", dict(fn.descriptions.LAYERS))


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.slow
def test_page_runs_as_written(page, sandbox):
    blocks = python_blocks(page)
    assert len(blocks) >= 2 and all("assert " in b for b in blocks[1:]), \
        f"{page}: expected python blocks with asserts, found {len(blocks)}"
    run_blocks(page, blocks)


def test_a_wrong_formula_in_the_page_fails_it(sandbox):
    """The page's asserts bite: forget the slope in dL/dx and its check_layer block fails."""
    blocks = python_blocks("write_your_own_layer.md")
    right = 'dx = jnp.where(x > 0, g, p["a"][None, :] * g)'
    assert right in blocks[0]
    wrong = [blocks[0].replace(right, "dx = g"), blocks[1]]
    with pytest.raises(AssertionError, match=r"python block 2 fails \(AssertionError"):
        run_blocks("write_your_own_layer.md", wrong)
