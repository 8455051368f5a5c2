"""Pieces of mtp.inference.scene on their own: band/scale rules, tiling, the rolling stitcher against a full-size
buffer, the streaming merge against one global NMS (also split between processes), streamed polygons against
whole-raster tracing, the block-row GeoTIFF writer and the streamed GeoJSON writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.features import shapes
from shapely.geometry import shape

from mtp.inference.scene.bands import BandScaling, ScaleRule, default_bands, parse_bands, parse_scale
from mtp.inference.scene.geotiff import RowWriter, geotiff_profile
from mtp.inference.scene.grid import TileGrid, blend_weights, split_rows
from mtp.inference.scene.merge import Detections, RollingMerge, nms_keep
from mtp.inference.scene.polygonize import polygonize_raster
from mtp.inference.scene.reader import SceneGeometry
from mtp.inference.scene.stitch import RowStitcher
from mtp.inference.scene.vectors import GeoJSONWriter, area_m2, read_features
from mtp.inference.segmentation import slide_windows

UTM = rasterio.crs.CRS.from_epsg(32633)


def test_scale_rules():
    assert parse_scale("percentile") == ScaleRule("percentile", 2, 98)
    assert parse_scale("range:0,4095") == ScaleRule("range", 0, 4095)
    for bad in ("percentile:5", "range:9,1", "gamma", "percentile:-1,50"):
        with pytest.raises(ValueError, match="--scale"):
            parse_scale(bad)
    data = np.array([[[0, 1500, 3000, 6000]]], np.uint16).repeat(3, 0)
    s2 = BandScaling.resolve(ScaleRule("s2"), "uint16", 3)
    assert np.allclose(s2.apply(data)[0, 0], [0, 127.5, 255, 255])
    rng = BandScaling.resolve(parse_scale("range:1000,2000"), "uint16", 3)
    assert np.allclose(rng.apply(data)[0, 0], [0, 127.5, 255, 255])
    sample = np.ma.MaskedArray(np.arange(300, dtype=np.float64).reshape(3, 10, 10) % 100,
                               mask=np.zeros((3, 10, 10), bool))  # fmt: skip
    pct = BandScaling.resolve(ScaleRule("auto"), "uint16", 3, sample)
    assert pct.rule == "percentile:2,98"
    assert pct.offsets[0] == pytest.approx(np.percentile(np.arange(100), 2))
    assert BandScaling.resolve(ScaleRule("auto"), "uint8", 3).identity
    assert BandScaling.from_json(pct.to_json()) == pct


def test_band_choice():
    assert parse_bands("3,2,1") == (3, 2, 1) and parse_bands(None) is None
    assert default_bands(4, alpha_bands=[4]) == (1, 2, 3) and default_bands(1) == (1, 1, 1)
    with pytest.raises(ValueError, match="choose three"):
        default_bands(2)
    with pytest.raises(ValueError, match="band numbers"):
        parse_bands("r,g,b")


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(224, 256, 64, 16), (100, 100, 100, 0), (300, 130, 64, 40)])
@pytest.mark.parametrize("merge", [False, True])
def test_grid_follows_the_official_windows(h, w, tile, overlap, merge):
    grid = TileGrid(h, w, tile, overlap, merge_snapped=merge)
    windows = slide_windows(h, w, tile, tile - overlap)
    tiles = [t for s in range(grid.n_steps) for t in grid.step_tiles(s)]
    assert sorted(tiles) == sorted((y1, x1) for y1, _, x1, _ in windows) and len(tiles) == len(windows)
    rows = [y for s in range(grid.n_steps) for y in range(grid.final_start(s), grid.final_end(s))]
    assert rows == list(range(h))  # final ranges partition the scene
    for s in range(grid.n_steps):  # nothing after step s touches its final rows; its context step reaches them
        assert all(grid.row_starts[r] >= grid.final_end(s) for q in range(s + 1, grid.n_steps) for r in grid.steps[q])
        c = grid.context_step(s)
        assert c == s or grid.step_bottom(c) > grid.final_start(s)
    snapped = grid.n_rows > 1 and grid.row_starts[-1] - grid.row_starts[-2] < grid.stride
    assert grid.n_steps == grid.n_rows - (1 if merge and snapped else 0)
    with pytest.raises(ValueError, match="smaller than one tile"):
        TileGrid(50, 500, 64, 0)
    assert split_rows(5, 2) == [(0, 3), (3, 5)] and split_rows(1, 3) == [(0, 1), (1, 1), (1, 1)]


@pytest.mark.parametrize("blend", ["mean", "gaussian", "cosine"])
@pytest.mark.parametrize("first", [0, 2])
def test_row_stitcher_equals_a_full_buffer(blend, first):
    grid = TileGrid(150, 170, 48, 20, merge_snapped=True)  # rows at 0, 28, 56, 84, 102 (snapped): 4 steps
    assert grid.steps[-1] == (3, 4)
    rng = np.random.default_rng(0)
    logits = {(y, x): rng.normal(size=(3, 48, 48)).astype(np.float32) for y in grid.row_starts for x in grid.col_starts}
    weights = blend_weights(48, blend)
    total, wsum = np.zeros((3, 150, 170)), np.zeros((150, 170))
    for (y, x), value in logits.items():
        w = 1.0 if weights is None else weights
        total[:, y : y + 48, x : x + 48] += value * w
        wsum[y : y + 48, x : x + 48] += w
    expected = total / wsum
    start = grid.context_step(first)
    stitcher = RowStitcher(grid, start, blend, block=32)
    got = np.full((3, 150, 170), np.nan)

    def consume(y0, x0, mean, valid):
        assert valid.all() and mean.shape[2] <= 32
        got[:, y0 : y0 + mean.shape[1], x0 : x0 + mean.shape[2]] = mean

    peak = 0
    for s in range(start, grid.n_steps):
        col = None
        for y, x in grid.step_tiles(s):
            if x != col:
                stitcher.flush(x, consume)
                col = x
            stitcher.add(y, x, logits[(y, x)], np.ones((48, 48), bool))
            peak = max(peak, sum(b.height * b.wsum.shape[1] for b in stitcher.blocks if b is not None))
        stitcher.finish_step(consume)
    done = grid.final_start(first)
    assert np.allclose(got[:, done:], expected[:, done:], atol=1e-5)
    assert peak < 48 * 170  # less than one tile height over the whole width


def _random_rboxes(n: int, size: float, rng) -> Detections:
    boxes = np.column_stack([rng.uniform(0, size, n), rng.uniform(0, size, n), rng.uniform(4, 40, n),
                             rng.uniform(4, 30, n), rng.uniform(-1.5, 1.5, n)])  # fmt: skip
    return Detections(torch.tensor(boxes), torch.tensor(rng.uniform(0, 1, n), dtype=torch.float32),
                      torch.tensor(rng.integers(0, 3, n)))  # fmt: skip


@pytest.mark.parametrize("box_dim", [5, 4])
def test_rolling_merge_equals_one_global_nms(box_dim):
    rng = np.random.default_rng(1)
    grid = TileGrid(400, 400, 100, 30)
    per_row = []
    for r in range(grid.n_rows):
        dets = _random_rboxes(60, 100, rng)
        dets.boxes[:, 0] += rng.uniform(0, 300)
        dets.boxes[:, 1] += grid.row_starts[r]
        if box_dim == 4:
            c = dets.boxes
            dets.boxes = torch.stack([c[:, 0] - c[:, 2] / 2, c[:, 1] - c[:, 3] / 2, c[:, 0] + c[:, 2] / 2,
                                      c[:, 1] + c[:, 3] / 2], 1)  # fmt: skip
        per_row.append(dets)
    everything = Detections.cat(per_row, box_dim)
    expected = everything.select(nms_keep(everything, 0.1))

    def run(rows, limit_high=None, final=True):
        merge, out = RollingMerge(box_dim, 0.1, margin=16, limit_high=limit_high), []
        for r in rows:
            merge.add(per_row[r])
            nxt = grid.row_starts[r + 1] if r + 1 < grid.n_rows else None
            out.append(merge.close(nxt))
        return out, merge.pending

    out, pending = run(range(grid.n_rows))
    got = Detections.cat(out, box_dim)
    assert len(pending) == 0
    assert sorted(map(tuple, got.boxes.tolist())) == sorted(map(tuple, expected.boxes.tolist()))
    assert sum(len(o) for o in out[:-1]) > 0  # objects are finalised before the end (streaming)
    # two processes: rows [0, 2) and [2, n); what each cannot decide goes to one final NMS
    top, top_pending = run(range(2))
    bottom, bottom_pending = run(range(2, grid.n_rows), limit_high=grid.row_starts[1] + grid.tile)
    deferred = Detections.cat([top_pending, bottom_pending], box_dim)
    joined = Detections.cat([*top, *bottom, deferred.select(nms_keep(deferred, 0.1))], box_dim)
    assert sorted(map(tuple, joined.boxes.tolist())) == sorted(map(tuple, expected.boxes.tolist()))


def test_polygonize_in_bands_equals_whole_raster_tracing(tmp_path):
    rng = np.random.default_rng(3)
    data = (rng.random((90, 70)) < 0.45).astype(np.uint8)
    data[10:60, 20:25] = 1  # a region across several bands
    data[0:3, 0:3] = 255
    transform = Affine(2.0, 0, 500000, 0, -2.0, 4000000)
    profile = {"driver": "GTiff", "height": 90, "width": 70, "count": 1, "dtype": "uint8", "crs": UTM,
               "transform": transform, "nodata": 255}  # fmt: skip
    with rasterio.open(tmp_path / "c.tif", "w", **profile) as ds:
        ds.write(data, 1)
    n = polygonize_raster(tmp_path / "c.tif", tmp_path / "c.geojson", band_rows=7)
    whole = [shape(g) for g, v in shapes(data, mask=data == 1, connectivity=4, transform=transform) if v == 1]
    features = json.loads((tmp_path / "c.geojson").read_text())["features"]
    assert n == len(features) == len(whole)
    assert sorted(round(f["properties"]["area_m2"], 6) for f in features) == sorted(round(p.area, 6) for p in whole)
    assert sum(f["properties"]["area_px"] for f in features) == int((data == 1).sum())


def test_area_in_a_geographic_crs():
    square = {"type": "Polygon", "coordinates": [[[0, 0], [0.001, 0], [0.001, 0.001], [0, 0.001], [0, 0]]]}
    # 0.001° x 0.001° at the equator: 111.32 m x 110.57 m
    assert area_m2(square, rasterio.crs.CRS.from_epsg(4326)) == pytest.approx(111.32 * 110.57, rel=0.005)
    assert area_m2(square, None) is None


def test_row_writer_stages_block_rows_and_resumes(tmp_path):
    geometry = SceneGeometry(600, 300, Affine(1, 0, 0, 0, -1, 600), UTM)
    profile = geotiff_profile(geometry, 1)
    data = np.random.default_rng(0).integers(0, 7, (600, 300), dtype=np.uint8)
    writer = RowWriter(tmp_path / "a.tif", profile, colormap={0: (1, 2, 3)}, class_names=["x"] * 7)
    for y in range(0, 300, 37):
        writer.write(y, data[y : min(y + 37, 300)])
    assert writer.sync() == 256  # whole block rows only
    writer.close(partial=True)
    with rasterio.open(tmp_path / "a.tif") as ds:
        part = ds.read(1)
    assert np.array_equal(part[:300], data[:300]) and (part[300:] == 255).all()
    writer = RowWriter(tmp_path / "a.tif", profile, start_row=256)
    writer.write(200, data[200:450])  # rows before 256 are dropped
    writer.write(450, data[450:])
    with pytest.raises(ValueError, match="skipped"):
        writer.write(700, data[:1])
    writer.close()
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert np.array_equal(ds.read(1), data) and ds.colormap(1)[0] == (1, 2, 3, 255)
        assert ds.overviews(1) == [2]


def test_geojson_writer_resumes_from_a_checkpoint(tmp_path):
    path = tmp_path / "o.geojson"
    writer = GeoJSONWriter(path, UTM, "o")
    point = {"type": "Polygon", "coordinates": [[[0.12345, 1], [2, 3], [4, 5], [0.12345, 1]]]}
    writer.add(point, {"k": 1})
    mark = writer.checkpoint()
    writer.add(point, {"k": 2})
    writer.close()
    assert [f["properties"]["k"] for f in json.loads(path.read_text())["features"]] == [1, 2]
    writer = GeoJSONWriter(path, UTM, "o", resume=mark)
    writer.add(point, {"k": 3})
    writer.close()
    data = json.loads(path.read_text())
    assert [f["properties"]["k"] for f in data["features"]] == [1, 3]
    assert data["features"][0]["geometry"]["coordinates"][0][0] == [0.123, 1]
    assert len(read_features(path, path.stat().st_size)) == 2
