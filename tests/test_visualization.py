"""The pictures: valid SVG with the right points, curves, frames, counts and images; an exact
contour; PNG bytes a separate decoder reads back; atomic files; errors that name the argument."""
import base64
import os
import pathlib
import re
import struct
import xml.etree.ElementTree as ET
import zlib

import jax
import numpy as np
import pytest

import funcnn as fn
from funcnn import visualization as viz
from funcnn.visualization import boundary, svg

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


def test_equal_colours_merge_into_one_run_per_row():
    xs, ys = np.linspace(0.0, 1.0, 12), np.linspace(0.0, 1.0, 9)
    doc = viz.boundary_svg(np.full((9, 12), 0.01), xs, ys, np.zeros((0, 2)),
                           np.zeros(0, int), "flat")
    (cells,) = [g for g in ET.fromstring(doc).iter(f"{SVG}g") if g.get("id") == "cells"]
    (path,) = cells.iter(f"{SVG}path")                # one colour: one path
    runs = re.findall(r"M(\d+) (\d+)\.5h(\d+)", path.get("d"))
    assert len(runs) == len(ys)                       # a run per row, each the whole row
    assert sorted(int(row) for _, row, _ in runs) == list(range(len(ys)))
    assert all((int(i), int(w)) == (0, len(xs)) for i, _, w in runs)
    r, _, b = _rgb(path.get("stroke"))
    assert b > r
    # a cell is SIZE / 12 pixels wide, so a whole row spans the plot's SIZE pixels
    assert cells.get("transform") == (f"translate({viz.LEFT} {viz.TOP}) "
                                      f"scale({viz.SIZE / 12:.6g} {viz.SIZE / 9:.6g})")



def _drawn_cells(cells, ny, nx):
    """The colour of every cell that a <g> of run paths draws, white where none is drawn."""
    drawn = np.full((ny, nx), "#ffffff", object)              # white: the background
    assert cells.get("stroke-width") == "1"                   # a line one cell thick
    for p in cells.iter(f"{SVG}path"):
        assert re.fullmatch(r"(M\d+ \d+\.5h\d+)+", p.get("d"))
        for i, row, w in re.findall(r"M(\d+) (\d+)\.5h(\d+)", p.get("d")):
            drawn[ny - 1 - int(row), int(i):int(i) + int(w)] = p.get("stroke")  # row 0 on top
    return drawn.tolist()


def test_still_cells_reproduce_the_quantised_grid():
    xs, ys = np.linspace(-1.0, 1.0, 9), np.linspace(0.0, 2.0, 7)
    gx, gy = np.meshgrid(xs, ys)
    s = 1 / (1 + np.exp(-3 * (gx + 0.5 * gy - 0.5)))          # every colour step from 0 to 1
    doc = viz.boundary_svg(s, xs, ys, np.zeros((0, 2)), np.zeros(0, int), "slope")
    (cells,) = [g for g in ET.fromstring(doc).iter(f"{SVG}g") if g.get("id") == "cells"]
    want = [[boundary._level_colour(v, viz.LEVELS) for v in r] for r in boundary._level(s)]
    assert len({c for r in want for c in r}) > 6               # more steps than an animation's
    assert _drawn_cells(cells, 7, 9) == want


# --- files ---------------------------------------------------------------------------------

def test_write_atomic_makes_folders_and_replaces_whole(tmp_path):
    target = tmp_path / "a" / "b" / "picture.svg"
    assert svg.write(target, "first") == target
    assert target.read_text() == "first"
    svg.write(target, "second, longer")
    assert target.read_text() == "second, longer"
    assert os.listdir(target.parent) == ["picture.svg"]   # no temp file left behind


def test_write_atomic_keeps_old_file_when_replace_fails(tmp_path, monkeypatch):
    target = tmp_path / "picture.svg"
    target.write_text("old")

    def broken(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk gone"):
        svg.write(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["picture.svg"]


def test_a_picture_is_a_path_that_a_notebook_draws(tmp_path):
    path = viz.curves({"train_loss": [1.0, 0.5]}, tmp_path / "c.svg")
    assert isinstance(path, pathlib.Path) and isinstance(path, viz.Picture)
    assert path == tmp_path / "c.svg" and str(path) == str(tmp_path / "c.svg")
    assert path._repr_svg_() == (tmp_path / "c.svg").read_text()    # IPython shows this
    assert ET.fromstring(path._repr_svg_()).tag == f"{SVG}svg"
    assert path.parent._repr_svg_() is None                          # a folder: its path
    cm = viz.confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "cm.svg")
    assert cm._repr_svg_().startswith("<svg")
    for module in pathlib.Path(viz.__file__).parent.glob("*.py"):   # IPython never imported
        assert "IPython" not in re.sub(r'""".*?"""|#.*', "", module.read_text(), flags=re.S)


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


# --- shared checks for the pictures below --------------------------------------------------

def _svg_root(path):
    """Parse an SVG file; it must be namespaced and have a 4-number viewBox matching its size."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    x, y, width, height = (float(v) for v in root.get("viewBox").split())
    assert (x, y) == (0, 0) and width > 0 and height > 0
    assert (float(root.get("width")), float(root.get("height"))) == (width, height)
    return root


def _by_id(root, name):
    (element,) = [e for e in root.iter() if e.get("id") == name]
    return element


def _texts(element):
    return [t.text for t in element.iter(f"{SVG}text")]


def _polyline_points(line):
    return [tuple(float(v) for v in p.split(",")) for p in line.get("points").split()]


# --- training curves -----------------------------------------------------------------------

def test_curves_draw_one_polyline_per_series_and_skip_nan(tmp_path):
    loss = np.array([2.0, 1.5, np.nan, 1.0, 0.8, 0.7])
    history = {"train_loss": np.linspace(2.2, 0.5, 6), "val_loss": loss,
               "train_accuracy": np.linspace(0.5, 0.9, 6),
               "test_accuracy": np.array([np.nan, 0.5, 0.6, 0.7, 0.75, np.nan])}
    root = _svg_root(viz.curves(history, tmp_path / "c.svg"))
    counts = {}
    for panel in ("loss", "accuracy"):
        for line in _by_id(root, panel).iter(f"{SVG}polyline"):
            counts[panel, line.get("class")] = len(_polyline_points(line))
    assert counts == {("loss", "train"): 6, ("loss", "validation"): 5,
                      ("accuracy", "train"): 6, ("accuracy", "test"): 4}
    assert _texts(_by_id(root, "legend")) == ["train", "validation", "test"]
    assert "loss and accuracy per epoch" in _texts(root)


def test_curves_put_larger_values_higher_and_epochs_left_to_right(tmp_path):
    history = {"train_loss": [3.0, 1.0, 2.0]}
    root = _svg_root(viz.curves(history, tmp_path / "c.svg"))
    (line,) = _by_id(root, "loss").iter(f"{SVG}polyline")
    (x0, y0), (x1, y1), (x2, y2) = _polyline_points(line)
    assert x0 < x1 < x2 and x1 - x0 == pytest.approx(x2 - x1)      # epochs 1, 2, 3: even steps
    assert y0 < y2 < y1                                              # screen y grows downward
    panels = [g.get("id") for g in root if g.tag == f"{SVG}g"]
    assert "loss" in panels and "accuracy" not in panels             # no accuracy: one panel


def test_curves_take_x_values_and_draw_a_single_point(tmp_path):
    history = {"step": [25, 50, 75, 100], "train_loss": [0.4, 0.3, 0.25, 0.2]}
    root = _svg_root(viz.curves(history, tmp_path / "s.svg", x_label="step"))
    panel = _by_id(root, "loss")
    assert {"step", "40", "100"} <= set(_texts(panel))              # whole-number ticks
    frame = panel.find(f".//{SVG}rect")
    (line,) = panel.iter(f"{SVG}polyline")
    xs = [x for x, _ in _polyline_points(line)]
    assert xs[0] == pytest.approx(float(frame.get("x")), abs=0.01)   # x = 25 at the left edge
    assert xs[-1] == pytest.approx(float(frame.get("x")) + float(frame.get("width")), abs=0.01)
    same = viz.curves({"train_loss": [0.4, 0.3, 0.25, 0.2], "probe": np.ones((4, 9, 1))},
                      tmp_path / "x.svg", x=[25, 50, 75, 100], x_label="step")  # not a curve
    assert same.read_text() == (tmp_path / "s.svg").read_text()
    one = _svg_root(viz.curves({"train_loss": [0.7], "test_loss": [np.nan]}, tmp_path / "1.svg"))
    lines = list(one.iter(f"{SVG}polyline"))
    assert [len(_polyline_points(line)) for line in lines] == [1]   # the all-NaN series: none
    assert len(list(_by_id(one, "loss").iter(f"{SVG}circle"))) == 1  # the point shows as a dot


@pytest.mark.parametrize("history, kwargs, match", [
    ({"train_loss": [1.0, 2.0], "trian_loss": [0.1, 0.1]}, {}, "'trian_loss'"),
    ({"lr": [0.1, 0.1]}, {}, "at least one series"),
    ({"train_loss": [1.0, 2.0], "test_loss": [1.0]}, {}, "lengths"),
    ({"train_loss": np.ones((2, 3))}, {}, r"history\['train_loss'\] must be 1-D"),
    ({}, {}, "at least one series"),
    ({"train_loss": [1.0, 2.0]}, {"x": [1, 2, 3]}, "x"),
    ({"train_loss": [1.0, 2.0], "step": [1, 2]}, {"x": [1, 2]}, "pass only one"),
    ([1.0, 2.0], {}, "history must be a dict"),
    ({"train_loss": [1.0]}, {"x_label": 3}, "x_label"),
])
def test_curves_refuse_bad_history(tmp_path, history, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.curves(history, tmp_path / "c.svg", **kwargs)
    assert not list(tmp_path.iterdir())


def test_whole_ticks_are_whole():
    for lo, hi in [(1, 3), (1, 12), (0.5, 1.5), (25, 2000), (1, 50)]:
        ticks = svg.ticks(lo, hi, whole=True)
        assert ticks and all(t == int(t) and lo <= t <= hi for t in ticks)


# --- the animation -------------------------------------------------------------------------

def _frames(n=5, ny=7, nx=9):
    """n score grids on a ny x nx grid: a slanted line sweeping across, so frames differ."""
    xs, ys = np.linspace(-1.0, 1.0, nx), np.linspace(0.0, 2.0, ny)
    gx, gy = np.meshgrid(xs, ys)
    frames = np.stack([1 / (1 + np.exp(-4 * (gx + 0.5 * gy - c))) for c in np.linspace(0, 1, n)])
    return frames, xs, ys


def _smil_display(group, t):
    """What a SMIL player shows for a frame group at time t: the active animation begun last."""
    value, latest = group.get("display"), -np.inf
    for a in group:
        if a.tag not in (f"{SVG}animate", f"{SVG}set"):
            continue
        begin, dur = (float(a.get(k).rstrip("s")) for k in ("begin", "dur"))
        local = t - begin
        if local < 0 or (a.get("repeatCount") != "indefinite" and local >= dur) or begin < latest:
            continue
        latest = begin
        if a.tag == f"{SVG}set":
            value = a.get("to")
        else:
            times = [float(k) for k in a.get("keyTimes").split(";")]
            phase = (local % dur) / dur
            value = a.get("values").split(";")[max(k for k, s in enumerate(times) if s <= phase)]
    return value


def test_animation_has_a_group_per_frame_switched_by_smil(tmp_path):
    frames, xs, ys = _frames()
    points = np.array([[-0.5, 0.5], [0.5, 1.5], [0.0, 1.0]])
    path = viz.animation(frames, xs, ys, points, [0, 1, 1], tmp_path / "a.svg",
                         steps=[0, 25, 50, 75, 100], seconds_per_frame=0.2,
                         still_path=tmp_path / "still.svg")
    root = _svg_root(path)
    groups = list(_by_id(root, "frames"))
    assert [g.get("id") for g in groups] == [f"frame-{t}" for t in range(5)]
    animates = [g.find(f"{SVG}animate") for g in groups]
    begins = [float(a.get("begin").rstrip("s")) for a in animates]
    assert begins == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert all(a.get("repeatCount") == "indefinite" and a.get("dur") == "1s" for a in animates)
    # without SMIL only the last frame shows; each frame carries its own step label
    assert [g.get("display") for g in groups] == ["none"] * 4 + ["inline"]
    assert [_texts(g)[-1] for g in groups] == [f"step {s}" for s in (0, 25, 50, 75, 100)]
    # the points are drawn once, on top of every frame
    assert len(list(_by_id(root, "points").iter(f"{SVG}circle"))) == 3
    assert list(root).index(_by_id(root, "points")) > list(root).index(_by_id(root, "frames"))
    still = _svg_root(tmp_path / "still.svg")
    assert any(t.endswith("step 100") for t in _texts(still))
    assert len(list(_by_id(still, "points").iter(f"{SVG}circle"))) == 3


def test_animation_shows_exactly_one_frame_at_a_time(tmp_path):
    frames, xs, ys = _frames(n=4)
    root = _svg_root(viz.animation(frames, xs, ys, np.zeros((0, 2)), np.zeros(0, int),
                                   tmp_path / "a.svg", seconds_per_frame=0.5))
    groups = list(_by_id(root, "frames"))
    for t in np.arange(0.05, 3 * 4 * 0.5, 0.1):                    # three loops
        shown = [k for k, g in enumerate(groups) if _smil_display(g, t) == "inline"]
        assert shown == [int(t / 0.5) % 4], t
    assert [_texts(g)[-1] for g in groups] == [f"frame {t} of 4" for t in (1, 2, 3, 4)]


def test_animation_cells_reproduce_the_quantised_grid(tmp_path):
    frames, xs, ys = _frames(n=2, ny=7, nx=9)
    root = _svg_root(viz.animation(frames, xs, ys, np.zeros((0, 2)), np.zeros(0, int),
                                   tmp_path / "a.svg"))
    for g, s in zip(_by_id(root, "frames"), frames, strict=True):
        cells = g.find(f"{SVG}g")
        assert cells.get("transform") == (f"translate({viz.LEFT} {viz.TOP}) "
                                          f"scale({viz.SIZE / 9:.6g} {viz.SIZE / 7:.6g})")
        drawn = np.full((7, 9), "#ffffff", object)                # white: the background
        assert cells.get("stroke-width") == "1"                   # a line one cell thick
        for p in cells.iter(f"{SVG}path"):
            assert re.fullmatch(r"(M\d+ \d+\.5h\d+)+", p.get("d"))
            for i, row, w in re.findall(r"M(\d+) (\d+)\.5h(\d+)", p.get("d")):
                drawn[6 - int(row), int(i):int(i) + int(w)] = p.get("stroke")  # row 0 on top
        q = boundary._level(s, viz.ANIMATION_LEVELS)
        want = [[boundary._level_colour(v, viz.ANIMATION_LEVELS) for v in r] for r in q]
        assert drawn.tolist() == want


def test_animation_refuses_bad_inputs(tmp_path):
    frames, xs, ys = _frames()
    points, labels = np.zeros((1, 2)), [0]
    bad = [((frames[0], xs, ys), {}, "frames must be f"),
           ((frames[:, :, :-1], xs, ys), {}, "each of frames must have shape"),
           ((np.where(frames > 0.9, np.nan, frames), xs, ys), {}, "NaN"),
           ((frames, xs, ys), {"steps": [1, 2]}, "steps"),
           ((frames, xs, ys), {"seconds_per_frame": 0}, "seconds_per_frame"),
           ((frames, xs, ys), {"title": 7}, "title")]
    for args, kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            viz.animation(*args, points, labels, tmp_path / "a.svg",
                          still_path=tmp_path / "s.svg", **kwargs)
    with pytest.raises(ValueError, match="points_label"):
        viz.animation(frames, xs, ys, points, [0, 1], tmp_path / "a.svg")
    assert not list(tmp_path.iterdir())


# --- confusion matrix ----------------------------------------------------------------------

NAMES = ["T-shirt/top", "Trouser", "Bag & co"]


def test_confusion_matrix_writes_every_count_and_name(tmp_path):
    cm = np.array([[50, 3, 7], [0, 6, 0], [12, 1, 40]])
    root = _svg_root(viz.confusion_matrix(cm, NAMES, tmp_path / "cm.svg"))
    cells = _by_id(root, "cells")
    assert _texts(cells) == [str(v) for v in cm.ravel()]            # row by row: true class
    labels = _texts(_by_id(root, "labels"))
    assert all(labels.count(name) == 2 for name in NAMES)           # a row and a column each
    assert {"true", "predicted"} <= set(labels)
    assert "confusion matrix: 96 of 119 right" in _texts(root)
    # shade follows the share of the row (6 of 6 is darkest), counts on dark cells are white
    rects = [r for r in cells.iter(f"{SVG}rect") if r.get("fill") != "none"]
    share = cm / cm.sum(axis=1, keepdims=True)
    assert [r.get("fill") for r in rects] == [svg.blend(viz.BLUE, v) for v in share.ravel()]
    assert rects[4].get("fill") == viz.BLUE
    inks = [t.get("fill") for t in cells.iter(f"{SVG}text")]
    assert inks == ["white" if v > 0.5 else viz.INK for v in share.ravel()]
    slants = [t.get("transform") for t in _by_id(root, "labels").iter(f"{SVG}text")
              if t.text == "T-shirt/top"]
    assert len(slants) == 2 and slants[0] is None and "rotate(-45" in slants[1]  # column slants


def test_confusion_matrix_short_names_stand_upright_and_empty_rows_are_white(tmp_path):
    root = _svg_root(viz.confusion_matrix([[0, 0], [2, 5]], ["a", "b"], tmp_path / "cm.svg"))
    assert not [t for t in _by_id(root, "labels").iter(f"{SVG}text")
                if "rotate" in (t.get("transform") or "") and t.text in ("a", "b")]
    first = next(_by_id(root, "cells").iter(f"{SVG}rect"))
    assert first.get("fill") == "#ffffff"                          # 0 of 0: no share at all


@pytest.mark.parametrize("cm, names, match", [
    (np.ones((2, 3), int), ["a", "b"], "cm must be a square"),
    (np.ones((3,), int), ["a", "b", "c"], "cm must be a square"),
    ([[1, -1], [0, 2]], ["a", "b"], "counts"),
    ([[1.5, 0], [0, 2]], ["a", "b"], "counts"),
    (np.eye(3, dtype=int), ["a", "b"], "class_names must be 3 strings"),
    (np.eye(2, dtype=int), "ab", "class_names"),
    (np.eye(2, dtype=int), ["a", 2], "class_names"),
])
def test_confusion_matrix_refuses_bad_inputs(tmp_path, cm, names, match):
    with pytest.raises(ValueError, match=match):
        viz.confusion_matrix(cm, names, tmp_path / "cm.svg")
    assert not list(tmp_path.iterdir())


# --- PNG and the image grid ----------------------------------------------------------------

def _decode_png(data):
    """A minimal PNG reader, written apart from the encoder: 8-bit grayscale, filter 0 only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = \
        struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 0, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()                                     # filter type 0 on every row
    return rows[:, 1:]


def test_png_bytes_round_trip():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (28, 28)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        data = viz.png_bytes(image)
        np.testing.assert_array_equal(_decode_png(data), image)
    assert viz.png_bytes(np.zeros((2, 2), np.uint8))[-8:] == b"IEND\xaeB`\x82"   # known CRC
    for bad in (np.zeros((2, 2)), np.zeros((2, 2, 3), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="gray"):
            viz.png_bytes(bad)


def test_image_grid_embeds_each_image_with_its_caption(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (5, 28, 28)).astype(np.float32)
    true, pred = np.array([0, 1, 2, 0, 1]), np.array([0, 2, 2, 1, 1])
    root = _svg_root(viz.image_grid(images, true, pred, NAMES, tmp_path / "g.svg", columns=2))
    tiles = [g for g in root.iter(f"{SVG}g") if g.get("class") == "tile"]
    assert len(tiles) == 5 == len(list(root.iter(f"{SVG}image")))
    for tile, image, a, b in zip(tiles, images, true, pred, strict=True):
        (img,) = tile.iter(f"{SVG}image")
        assert "image-rendering: pixelated" in img.get("style")
        prefix = "data:image/png;base64,"
        assert img.get("href").startswith(prefix)
        pixels = _decode_png(base64.b64decode(img.get("href")[len(prefix):]))
        np.testing.assert_array_equal(pixels, np.rint(image * 255).astype(np.uint8))
        texts = list(tile.iter(f"{SVG}text"))
        assert [t.text for t in texts] == [f"true: {NAMES[a]}", f"pred: {NAMES[b]}"]
        assert texts[1].get("fill") == (viz.INK if a == b else viz.RED)
    rows = {float(next(t.iter(f"{SVG}image")).get("y")) for t in tiles}
    assert len(rows) == 3                                           # 5 images, 2 to a row


def test_image_grid_takes_uint8_and_flat_rows_and_one_hot_labels(tmp_path):
    images = np.arange(3 * 784).reshape(3, 784) % 256
    one_hot = np.eye(3)[[2, 1, 0]]
    path = viz.image_grid(images.astype(np.uint8), one_hot, [2, 1, 1], NAMES, tmp_path / "g.svg")
    root = _svg_root(path)
    hrefs = [i.get("href").split(",", 1)[1] for i in root.iter(f"{SVG}image")]
    np.testing.assert_array_equal(_decode_png(base64.b64decode(hrefs[0])),
                                  images[0].reshape(28, 28))
    assert "true: Bag & co" in _texts(root)


@pytest.mark.parametrize("change, match", [
    ({"images": np.full((2, 28, 28), 2.0)}, "images must be floats in"),
    ({"images": np.zeros((2, 30))}, "images must be f"),
    ({"true_labels": [0, 1, 2]}, "true_labels"),
    ({"pred_labels": [0, 3]}, "pred_labels"),
    ({"class_names": ["a", None]}, "class_names"),
    ({"columns": 0}, "columns"),
])
def test_image_grid_refuses_bad_inputs(tmp_path, change, match):
    args = {"images": np.zeros((2, 28, 28)), "true_labels": [0, 1], "pred_labels": [1, 1],
            "class_names": ["a", "b", "c"]} | change
    columns = args.pop("columns", 8)
    with pytest.raises(ValueError, match=match):
        viz.image_grid(**args, path=tmp_path / "g.svg", columns=columns)
    assert not list(tmp_path.iterdir())
