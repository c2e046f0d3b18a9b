"""`convlens style CONTENT STYLE [STYLE...] -o OUT.png [options]`."""

from __future__ import annotations

import argparse

from convlens.errors import ConvlensError


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "style",
        help="neural style transfer (Gatys): paint a photo in the style of one or more images",
        description="Optimise the pixels of an image so that its content features match CONTENT "
        "and its Gram-matrix style statistics match STYLE (several STYLE images blend). "
        "Runs offline with the packaged EfficientNet-Lite0 weights.",
    )
    p.add_argument("content", help="content photo")
    p.add_argument("style", nargs="+", help="style image(s)")
    p.add_argument("-o", "--output", required=True, help="output image (PNG/JPEG)")
    p.add_argument("--style-weights", type=_floats, help="blend weights, e.g. 0.7,0.3")
    p.add_argument("--size", type=int, default=512, help="long side of the output (default 512)")
    p.add_argument(
        "--steps", type=int, default=300, help="iterations (finer --scales get half; default 300)"
    )
    p.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    p.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (default 0.02)")
    p.add_argument("--init", choices=["content", "noise", "content+noise"], default="content")
    p.add_argument("--preserve-colors", action="store_true", help="luminance-only transfer")
    p.add_argument("--tv", type=float, default=300.0, help="total-variation weight (default 300)")
    p.add_argument("--scales", type=int, default=1, help="coarse-to-fine levels (default 1)")
    p.add_argument("--style-scale", type=float, default=1.0, help="style image size factor")
    p.add_argument("--content-weight", type=float, default=1.0, help="alpha (default 1)")
    p.add_argument("--style-weight", type=float, default=None, help="beta (default per preset)")
    p.add_argument(
        "--features",
        choices=["avgpool", "raw", "preact"],
        default="avgpool",
        help="layer preset (default avgpool: block outputs, strided convolutions "
        "replaced by average pooling)",
    )
    p.add_argument("--content-layers", type=_names, help="comma-separated layer names")
    p.add_argument("--style-layers", type=_names, help="comma-separated layer names")
    p.add_argument("--layer-weights", type=_floats, help="lambda per style layer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", help="folder for intermediate frames")
    p.add_argument("--gif", help="animated GIF of the optimisation")
    p.add_argument("--frame-every", type=int, default=0, help="steps between frames (0: ~30)")
    p.add_argument(
        "--backbone", choices=["efficientnet-lite0", "vgg19"], default="efficientnet-lite0"
    )
    p.add_argument("--vgg-weights", help="torchvision vgg19 state dict (.pth)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (GPU)")
    p.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=False,
        help="torch.compile the loss; optional mode, e.g. reduce-overhead (CUDA graphs on GPU)",
    )
    p.add_argument("--pad", type=int, default=16, help="reflect padding in px (default 16)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from convlens.style.optimize import run_transfer

    options = dict(
        size=args.size,
        steps=args.steps,
        optimizer=args.optimizer,
        lr=args.lr,
        init=args.init,
        preserve_colors=args.preserve_colors,
        tv_weight=args.tv,
        scales=args.scales,
        style_scale=args.style_scale,
        content_weight=args.content_weight,
        features=args.features,
        seed=args.seed,
        frames=args.frames,
        gif=args.gif,
        backbone=args.backbone,
        vgg_weights=args.vgg_weights,
        device=args.device,
        amp=args.amp,
        compile=args.compile,
        progress=not args.quiet,
        style_weights=args.style_weights,
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        layer_weights=args.layer_weights,
        threads=args.threads,
        pad=args.pad,
        frame_every=args.frame_every,
    )
    if args.style_weight is not None:
        options["style_weight"] = args.style_weight
    out = args.output
    if not out.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")):
        raise ConvlensError(f"{out}: output must be an image file (.png, .jpg, ...)")
    result = run_transfer(args.content, args.style, **options)
    try:
        result.image.save(out)
    except OSError as e:
        raise ConvlensError(f"{out}: cannot write ({e})") from None
    w, h = result.image.size
    print(f"wrote {out} ({w}x{h}, {result.seconds:.1f} s)")
    return 0
