"""``mtp tool`` commands that write or convert datasets: make-synthetic, spacenet-to-masks, dota-split,
dior-to-coco, xview-to-coco, samrs-to-coco."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from mtp.cli.arguments import fraction, int_at_least, nonnegative_int, positive_float, positive_int


def tool_make_synthetic(argv: Sequence[str]) -> int:
    """Write a small synthetic dataset in an official file format (mtp.data.synthetic)."""
    from mtp.data.synthetic import FORMATS, write_dataset

    parser = argparse.ArgumentParser(prog="mtp tool make-synthetic", description=tool_make_synthetic.__doc__)
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument(
        "--n",
        type=positive_int,
        help="training images (per class for eurosat; scenes for scene: default 1); val/test n//2 (default 8)",
    )
    parser.add_argument(
        "--size", type=int_at_least(16), help="image size in pixels (default: the writer's, 256; eurosat 64)"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--layout", choices=["mtp", "release"], help="loveda / eurosat folder layout")
    parser.add_argument("--variant", choices=["sota", "sior", "fast"], help="samrs set")
    parser.add_argument(
        "--object-scale", type=positive_float, help="dota, scene: multiply object sizes (1.0 ~ 0.5 m/px)"
    )
    scene = parser.add_argument_group("scene (large GeoTIFF scenes for mtp predict-scene; --size: pixels a side)")
    scene.add_argument("--bands", type=int, choices=[3, 4], help="3: R,G,B; 4: B,G,R,NIR (Sentinel-2 order)")
    scene.add_argument("--dtype", choices=["uint8", "uint16"], help="uint16: digital numbers (use --scale s2)")
    scene.add_argument("--crs", help="CRS of the scene (default EPSG:32633); 'none' for a raster without CRS")
    scene.add_argument("--pixel-size", type=positive_float, help="metres per pixel (default 0.5)")
    scene.add_argument("--nodata-fraction", type=fraction, help="share of the scene that is no-data (default 0.1)")
    scene.add_argument("--pair", action="store_true", default=None, help="a change-detection pair (_a, _b, truth)")
    args = parser.parse_args(argv)
    crs = None if args.crs is None else (None if args.crs.lower() == "none" else args.crs)
    chosen = (("layout", args.layout), ("variant", args.variant), ("object_scale", args.object_scale),
              ("bands", args.bands), ("dtype", args.dtype), ("pixel_size", args.pixel_size),
              ("nodata_fraction", args.nodata_fraction), ("pair", args.pair))  # fmt: skip
    options = {k: v for k, v in chosen if v is not None} | ({"crs": crs} if args.crs is not None else {})
    n = args.n if args.n is not None else (1 if args.format == "scene" else 8)
    print(write_dataset(args.format, args.out, n=n, size=args.size, seed=args.seed, **options))
    return 0


def tool_spacenet_to_masks(argv: Sequence[str]) -> int:
    """Convert the SpaceNet v1 release (GeoTIFF + GeoJSON) to 0/1 PNG masks with a seeded train/val split."""
    from mtp.data.tools.spacenet import convert_spacenet_v1

    parser = argparse.ArgumentParser(prog="mtp tool spacenet-to-masks", description=tool_spacenet_to_masks.__doc__)
    parser.add_argument("--src", required=True, help="release folder (searched for 3band_*.tif, Geo_*.geojson)")
    parser.add_argument("--out", required=True, help="output root: {train,val}/{images,labels}/*.png")
    parser.add_argument("--val-fraction", type=fraction, default=0.2)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    args = parser.parse_args(argv)
    summary = convert_spacenet_v1(args.src, args.out, val_fraction=args.val_fraction, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "skipped_files"}, indent=1))
    return 0


def tool_dota_split(argv: Sequence[str]) -> int:
    """Split DOTA images (+ labelTxt) into overlapping patches like mmrotate's splitter (ss / ms presets)."""
    from mtp.data.tools.dota_split import PRESETS, split_dota

    parser = argparse.ArgumentParser(prog="mtp tool dota-split", description=tool_dota_split.__doc__)
    parser.add_argument("--images", required=True, help="folder of the original images")
    parser.add_argument("--ann", help="folder of DOTA txt labels (omit for the test set)")
    parser.add_argument("--out", required=True, help="output root: images/*.png and annfiles/*.txt")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ss", help="ss: 1024/200; ms: rates 0.5/1/1.5")
    parser.add_argument("--workers", type=nonnegative_int, default=0, help="worker processes (0: in this process)")
    args = parser.parse_args(argv)
    summary = split_dota(args.images, args.ann, args.out, workers=args.workers, **PRESETS[args.preset])
    print(json.dumps(summary, indent=1))
    return 0


def tool_dior_to_coco(argv: Sequence[str]) -> int:
    """Convert DIOR horizontal VOC xml to DIOR_{trainval,test}_coco.json (the official converter's output)."""
    from mtp.data.tools.dior_coco import dior_to_coco

    parser = argparse.ArgumentParser(prog="mtp tool dior-to-coco", description=tool_dior_to_coco.__doc__)
    parser.add_argument("--root", required=True, help="DIOR root: ImageSets/Main, JPEGImages-*, Annotations")
    parser.add_argument("--out", required=True, help="output folder for the jsons (the root for the config layout)")
    splits = ["trainval", "train", "val", "test"]
    parser.add_argument("--splits", nargs="+", default=["trainval", "test"], choices=splits)
    parser.add_argument(
        "--first-category-id", type=nonnegative_int, default=0, help="id of the first class (official: 0)"
    )
    args = parser.parse_args(argv)
    summary = dior_to_coco(args.root, args.out, splits=args.splits, first_category_id=args.first_category_id)
    print(json.dumps(summary, indent=1))
    return 0


def tool_xview_to_coco(argv: Sequence[str]) -> int:
    """Tile the xView release (GeoJSON + GeoTIFFs) into 416-px PNGs with COCO jsons and a seeded train/val split."""
    from mtp.data.tools.xview import convert_xview

    parser = argparse.ArgumentParser(prog="mtp tool xview-to-coco", description=tool_xview_to_coco.__doc__)
    parser.add_argument("--geojson", required=True, help="xView_train.geojson")
    parser.add_argument("--images", required=True, help="folder of the release images (train_images/*.tif)")
    parser.add_argument("--out", required=True, help="output root: {train,val}/images/*.png, xview_*_coco_format.json")
    parser.add_argument("--val-fraction", type=fraction, default=0.2)
    parser.add_argument(
        "--num-train", type=nonnegative_int, help="train images (overrides --val-fraction; official: 700)"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--tile", type=int_at_least(32), default=416)
    args = parser.parse_args(argv)
    summary = convert_xview(args.geojson, args.images, args.out, val_fraction=args.val_fraction, seed=args.seed,
                            num_train=args.num_train, tile=args.tile)  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0


def tool_samrs_to_coco(argv: Sequence[str]) -> int:
    """Convert SAMRS instance pickles ({label, mask RLE} per instance) to COCO jsons (official convert_pkl_json)."""
    from mtp.data.tools.samrs_coco import samrs_to_coco

    parser = argparse.ArgumentParser(prog="mtp tool samrs-to-coco", description=tool_samrs_to_coco.__doc__)
    parser.add_argument("--dataset", required=True, choices=["sota", "sior", "fast"], help="class list and json name")
    parser.add_argument("--lists", required=True, help="folder with the split lists {train,valid}.txt (image stems)")
    parser.add_argument("--images", required=True, help="image folder (<stem>.png; SIOR <stem>.jpg)")
    parser.add_argument("--pickles", required=True, help="instance pickles <stem>.pkl (rhbox_segs_init/ins)")
    parser.add_argument("--out", required=True, help="output folder (the set's base folder for SAMRSDataset)")
    parser.add_argument("--splits", nargs="+", default=["train", "valid"])
    parser.add_argument("--prefix", help="json name prefix (default: sota_rbb | sior | fast, as the reader expects)")
    args = parser.parse_args(argv)
    summary = samrs_to_coco(args.lists, args.images, args.pickles, args.out, args.dataset, splits=args.splits,
                            prefix=args.prefix)  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0
