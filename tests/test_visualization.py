"""The decision-boundary picture: valid SVG, the right points, an exact contour, atomic files."""
import os
import xml.etree.ElementTree as ET

import jax
import numpy as np
import pytest

import funcnn as fn
from funcnn import visualization as viz

SVG = "{http://www.w3.org/2000/svg}"


def _net():
    return fn.model.mlp([2, 8, 2], hidden=fn.math.sigmoid, output=fn.math.sigmoid,
                        loss=fn.losses.mse, init=fn.model.uniform(0.5))


@pytest.fixture(scope="module")
def untrained():
    net = _net()
    params = fn.model.init(jax.random.key(0), net)
    ds = fn.data.gaussian_clusters(jax.random.key(1), n_per_class=50)
    return net, params, ds


@pytest.fixture(scope="module")
def trained(untrained):
    """The tiny network after 300 full-batch steps: its boundary crosses the plane."""
    net, params, ds = untrained
    step = jax.jit(fn.model.grad_step, static_argnums=0)
    for _ in range(300):
        params, _ = step(net, params, ds, 2.0)
    return net, params, ds


def _circles_by_fill(root):
    (points,) = [g for g in root.iter(f"{SVG}g") if g.get("id") == "points"]
    fills = [c.get("fill") for c in points.iter(f"{SVG}circle")]
    return {fill: fills.count(fill) for fill in set(fills)}


def _rgb(colour):
    return [int(colour[k:k + 2], 16) for k in (1, 3, 5)]


# --- the written file ----------------------------------------------------------------------

def test_decision_boundary_writes_valid_svg(trained, tmp_path):
    net, params, ds = trained
    path = viz.decision_boundary(net, params, ds, tmp_path / "db.svg", resolution=30)
    assert path == tmp_path / "db.svg"
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    assert len(root.get("viewBox").split()) == 4
    # every data point, in its class colour; the clusters are 50 + 50
    assert _circles_by_fill(root) == {viz.BLUE: 50, viz.ORANGE: 50}
    # the trained boundary crosses the plane, so the contour is drawn
    xs, ys, s = viz.boundary_grid(net, params, (0.0, 0.0), (1.0, 1.0), 30)
    assert s.min() < 0.5 < s.max()
    (contour,) = [p for p in root.iter(f"{SVG}path") if p.get("id") == "boundary"]
    assert contour.get("d").startswith("M") and "L" in contour.get("d")
    # the default title names the network, escaped and read back intact
    titles = [t.text for t in root.iter(f"{SVG}text")]
    assert f"{net} decision boundary" in titles


def test_no_boundary_no_path(untrained, tmp_path):
    net, params, ds = untrained                      # p1 is about 0.6 everywhere
    path = viz.decision_boundary(net, params, ds, tmp_path / "flat.svg", resolution=30)
    root = ET.parse(path).getroot()
    assert not [p for p in root.iter(f"{SVG}path") if p.get("id") == "boundary"]


def test_one_forward_call_for_the_whole_grid(trained, tmp_path, monkeypatch):
    net, params, ds = trained
    calls = []
    forward = fn.model.forward

    def counting(net, params, x):
        calls.append(x.shape)
        return forward(net, params, x)
    monkeypatch.setattr(fn.model, "forward", counting)
    viz.decision_boundary(net, params, ds, tmp_path / "db.svg", resolution=30)
    assert calls == [(30 * 30, 2)]


def test_one_output_network_uses_its_column(tmp_path):
    net = fn.model.mlp([2, 4, 1], hidden=fn.math.tanh, output=fn.math.sigmoid,
                       loss=fn.losses.binary_cross_entropy)
    params = fn.model.init(jax.random.key(2), net)
    x = np.random.default_rng(3).uniform(-1, 1, (40, 2)).astype(np.float32)
    ds = fn.data.Dataset(x, (np.arange(40) % 2 == 1).astype(np.float32)[:, None])   # 20 + 20
    xs, ys, s = viz.boundary_grid(net, params, (-1.0, -1.0), (1.0, 1.0), 5)
    gx, gy = np.meshgrid(xs, ys)
    out = fn.model.forward(net, params, np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32))
    np.testing.assert_allclose(s.ravel(), np.asarray(out)[:, 0], rtol=1e-6)
    path = viz.decision_boundary(net, params, ds, tmp_path / "c.svg", resolution=5)
    root = ET.parse(path).getroot()
    assert _circles_by_fill(root) == {viz.BLUE: 20, viz.ORANGE: 20}


def test_log_softmax_output_is_turned_into_p1():
    net = fn.model.mlp([2, 3, 2], hidden=fn.math.relu, output=fn.math.log_softmax,
                       loss=fn.losses.nll)
    out = np.log(np.array([[0.9, 0.1], [0.25, 0.75]]))
    np.testing.assert_allclose(viz.class1_score(net, out), [0.1, 0.75], rtol=1e-12)


# --- marching squares ----------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [(1.0, 0.0), (0.3, 0.7), (-0.4, 1.1)])
def test_contour_of_a_plane_lies_on_its_line(a, b):
    # s = a x + b y + c is linear along every edge, so interpolation finds the exact line
    xs, ys = np.linspace(-0.13, 1.21, 11), np.linspace(0.0, 2.0, 9)
    gx, gy = np.meshgrid(xs, ys)
    c = 0.5 - (a * 0.6 + b * 0.4)                    # the line passes through (0.6, 0.4)
    segments = viz.contour_segments(a * gx + b * gy + c, xs, ys, level=0.5)
    assert segments
    for end in (p for seg in segments for p in seg):
        assert abs(a * end[0] + b * end[1] + c - 0.5) < 1e-9
        assert xs[0] - 1e-12 <= end[0] <= xs[-1] + 1e-12
        assert ys[0] - 1e-12 <= end[1] <= ys[-1] + 1e-12


def test_vertical_line_crosses_each_row_of_squares_once():
    xs, ys = np.linspace(0.0, 1.0, 7), np.linspace(0.0, 1.0, 5)
    s = np.broadcast_to(xs, (5, 7))                  # s = x: the line x = 0.5
    segments = viz.contour_segments(s, xs, ys)
    assert len(segments) == len(ys) - 1
    assert all(abs(x - 0.5) < 1e-9 for seg in segments for x, _ in seg)


def test_saddle_gives_two_segments():
    s = np.array([[1.0, 0.0], [0.0, 1.0]])           # opposite corners above 0.5
    segments = viz.contour_segments(s, [0.0, 1.0], [0.0, 1.0])
    assert len(segments) == 2


@pytest.mark.parametrize("value", [0.0, 0.2, 0.5, 1.0])
def test_constant_grid_has_no_contour(value):
    xs = np.linspace(0.0, 1.0, 6)
    assert viz.contour_segments(np.full((6, 6), value), xs, xs) == []


# --- colours -------------------------------------------------------------------------------

def test_confident_cells_take_their_class_colour():
    r, g, b = _rgb(viz.score_colour(0.0))            # sure of class 0
    assert b > r + 60 and b > g
    r, g, b = _rgb(viz.score_colour(1.0))            # sure of class 1
    assert r > b + 60 and r > g
    assert viz.score_colour(0.5) == "#ffffff"        # undecided: white
    assert min(_rgb(viz.score_colour(0.52))) > 220   # barely decided: nearly white


def test_equal_colours_merge_into_one_rect_per_row():
    xs, ys = np.linspace(0.0, 1.0, 12), np.linspace(0.0, 1.0, 9)
    svg = viz.boundary_svg(np.full((9, 12), 0.01), xs, ys, np.zeros((0, 2)),
                           np.zeros(0, int), "flat")
    (cells,) = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("id") == "cells"]
    rects = list(cells.iter(f"{SVG}rect"))
    assert len(rects) == len(ys)
    for rect in rects:
        r, _, b = _rgb(rect.get("fill"))
        assert b > r
        assert float(rect.get("width")) == pytest.approx(viz.SIZE, abs=0.02)


# --- files ---------------------------------------------------------------------------------

def test_write_atomic_makes_folders_and_replaces_whole(tmp_path):
    target = tmp_path / "a" / "b" / "picture.svg"
    assert viz._write_atomic(target, "first") == target
    assert target.read_text() == "first"
    viz._write_atomic(target, "second, longer")
    assert target.read_text() == "second, longer"
    assert os.listdir(target.parent) == ["picture.svg"]   # no temp file left behind


def test_write_atomic_keeps_old_file_when_replace_fails(tmp_path, monkeypatch):
    target = tmp_path / "picture.svg"
    target.write_text("old")

    def broken(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk gone"):
        viz._write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["picture.svg"]


# --- errors --------------------------------------------------------------------------------

def test_bad_inputs_name_the_argument(trained, tmp_path):
    net, params, ds = trained
    three = fn.data.Dataset(np.ones((4, 3), np.float32), ds.y[:4])
    with pytest.raises(ValueError, match="ds.x has 3 features"):
        viz.decision_boundary(net, params, three, tmp_path / "x.svg")
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="resolution"):
            viz.decision_boundary(net, params, ds, tmp_path / "x.svg", resolution=bad)
    with pytest.raises(ValueError, match="margin"):
        viz.decision_boundary(net, params, ds, tmp_path / "x.svg", margin=-0.1)
    with pytest.raises(ValueError, match="lo and hi"):
        viz.boundary_grid(net, params, (1.0, 0.0), (0.0, 1.0), 10)
    with pytest.raises(ValueError, match=r"s must have shape"):
        viz.contour_segments(np.zeros((3, 4)), np.arange(3.0), np.arange(4.0))
    assert not list(tmp_path.iterdir())              # nothing written on a refusal
