"""Neural style transfer (Gatys et al. 2015) by optimising the pixels of the generated image G
against `convlens.style.objective.StyleObjective`:

    J(G) = alpha * J_content(C, G) / n_content + beta * J_style(S, G) + tv * J_tv(G)

Style targets are position-normalised Gram matrices, so style and content images may differ
in size; several style images blend as a weighted sum of their Grams. Pixels live in [0, 1]
(clamped after each step); the backbone runs only up to the deepest layer used. The run is
planned first (`convlens.style.plan`: pyramid, memory), and every step is reported to
subscribers (`convlens.style.events`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import ImageInput
from convlens.models.devices import resolve_device
from convlens.style import imaging
from convlens.style.events import (
    LOG_EVERY,
    Callback,
    DoneEvent,
    FrameSaver,
    GifRecorder,
    HistoryRecorder,
    ProgressReporter,
    StepEvent,
)
from convlens.style.features import FeatureExtractor, load_backbone, presets
from convlens.style.objective import FeatureInput, StyleObjective, targets
from convlens.style.options import StyleOptions, make_options
from convlens.style.plan import Level, check_memory, pyramid, style_size


@dataclass
class StyleResult:
    image: Image.Image
    history: list[dict] = field(default_factory=list)  # per logged step: scale, step, terms
    seconds: float = 0.0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    estimated_bytes: int = 0


@dataclass(frozen=True)
class Layers:
    """The layers a run taps and how it weighs them, resolved from the preset and options."""

    content: list[str]
    style: list[str]
    layer_weights: list[float]  # lambda_l per style layer
    style_weight: float  # beta
    avgpool: bool


def transfer(content: ImageInput, style, *, callback: Callback | None = None, **options):
    """Stylise `content` with `style` (a path/PIL/array, or a list of them); returns a PIL image.

    Options are the fields of `StyleOptions`; `callback(event)` receives every
    `StepEvent` and the final `DoneEvent` (`convlens.style.events`).
    """
    return run_transfer(content, style, callback=callback, **options).image


def run_transfer(
    content: ImageInput, style, *, callback: Callback | None = None, **options
) -> StyleResult:
    """`transfer`, returning the image with its loss history, timing and pyramid sizes."""
    o = make_options(options)
    styles = list(style) if isinstance(style, list | tuple) else [style]
    if not styles:
        raise ConvlensError("at least one style image is needed")
    if o.style_weights is not None and len(o.style_weights) != len(styles):
        raise ConvlensError(
            f"{len(o.style_weights)} style weights for {len(styles)} style image(s)"
        )
    check_output_paths(o, [content, *styles])
    content_img = imaging.load_checked(content, "content image")
    style_imgs = [imaging.load_checked(s, f"style image {i + 1}") for i, s in enumerate(styles)]
    device = resolve_device(o.device)
    layers = resolve_layers(o)
    if o.threads:
        torch.set_num_threads(o.threads)

    backbone = load_backbone(o.backbone, o.vgg_weights)
    extractor = FeatureExtractor(backbone, layers.content + layers.style, o.fold_bn, layers.avgpool)
    levels = pyramid(*content_img.shape[:2], o)
    needed = check_memory(extractor, levels[-1].size, o, device)
    extractor = extractor.to(device)
    if o.channels_last:
        extractor = extractor.to(memory_format=torch.channels_last)
    features = FeatureInput(extractor, o.pad, o.channels_last, o.amp, device)

    result = StyleResult(image=None, sizes=[lv.size for lv in levels], estimated_bytes=needed)  # type: ignore[arg-type]
    subscribers = _subscribers(o, result, callback)
    try:
        _run(o, features, layers, levels, content_img, style_imgs, result, subscribers)
    finally:
        for s in subscribers:
            if hasattr(s, "close"):
                s.close()
    return result


def check_output_paths(o: StyleOptions, inputs: list) -> None:
    """Refuse, before any work, a GIF or frames folder that is one of the inputs or can't be
    written (the frames folder may be new; its files are named frame_*.png)."""
    from convlens.cli_options import check_outputs

    paths = [p for p in inputs if isinstance(p, str | Path)]
    check_outputs([o.gif], paths)
    if o.frames is not None:
        folder = Path(o.frames)
        if folder.exists() and not folder.is_dir():
            raise ConvlensError(f"{folder}: exists and is not a folder; refusing to write frames")


def resolve_layers(o: StyleOptions) -> Layers:
    """Content/style layers, lambda_l and beta: the options', or the preset's."""
    preset = presets(o.backbone)[o.features]
    style_weight = preset.style_weight if o.style_weight is None else o.style_weight
    content = list(o.content_layers or preset.content)
    style = list(o.style_layers or preset.style)
    if not style and style_weight > 0:
        raise ConvlensError("no style layers given")
    preset_lam = preset.layer_weights if not o.style_layers else None
    lam = o.layer_weights or preset_lam or [1.0 / max(len(style), 1)] * len(style)
    if len(lam) != len(style):
        raise ConvlensError(f"{len(lam)} layer weights for {len(style)} style layers")
    avgpool = preset.avgpool if o.avgpool is None else o.avgpool
    return Layers(content, style, list(lam), style_weight, avgpool)


def _subscribers(o: StyleOptions, result: StyleResult, callback: Callback | None) -> list:
    subscribers: list = [HistoryRecorder(result.history)]
    if o.progress:
        subscribers.append(ProgressReporter())
    if o.frames:
        subscribers.append(FrameSaver(Path(o.frames), o.frame_every))
    if o.gif:
        subscribers.append(GifRecorder(Path(o.gif), o.frame_every))
    if callback is not None:
        subscribers.append(callback)
    return subscribers


def _run(o, features, layers, levels, content_img, style_imgs, result, subscribers) -> None:
    """Every pyramid level, coarse to fine; fills result.image and result.seconds."""

    def emit(event) -> None:
        for s in subscribers:
            s(event)

    gen = torch.Generator().manual_seed(o.seed)
    torch.manual_seed(o.seed)
    device = features.device
    content_full = imaging.to_tensor(content_img, "cpu")
    styles_full = [imaging.to_tensor(s, "cpu") for s in style_imgs]
    blend = np.asarray(o.style_weights or [1.0] * len(style_imgs), dtype=np.float64)
    blend = (blend / blend.sum()).tolist()
    t_start = time.perf_counter()
    x = None
    for level in levels:
        c = imaging.resize(content_full, level.size).to(device)
        c_yiq = imaging.yiq(c) if o.preserve_colors else None
        style_list = [_level_style(s, level, c_yiq, o).to(device) for s in styles_full]
        net_c = c_yiq[:, :1].expand(-1, 3, -1, -1) if o.preserve_colors else c
        content_t, grams = targets(features, net_c, style_list, blend, len(layers.content))
        objective = StyleObjective(
            features,
            content_t,
            grams,
            layers.layer_weights,
            (o.content_weight, layers.style_weight, o.tv_weight),
        )
        # the variable: RGB, or luminance only
        if x is None:
            x = initial_image(net_c[:, :1] if o.preserve_colors else c, o, gen)
        else:
            x = F.interpolate(x, size=level.size, mode="bicubic", align_corners=False).clamp(0, 1)
        x = optimize_level(x, objective, o, level, len(levels), emit, c_yiq)
    if device.type == "cuda":
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - t_start
    result.image = imaging.to_pil(imaging.compose(x, c_yiq))
    emit(DoneEvent(result.image, result.seconds, result.sizes))


def _level_style(s: torch.Tensor, level: Level, c_yiq, o: StyleOptions) -> torch.Tensor:
    """A style image at a level's scale; with preserve colours, its luminance matched to the
    content's and repeated to three channels."""
    s = imaging.resize(s, style_size(tuple(s.shape[-2:]), level.size, o.style_scale))
    if c_yiq is None:
        return s
    s = s.to(c_yiq.device)
    return imaging.match_luminance(imaging.yiq(s)[:, :1], c_yiq[:, :1]).expand(-1, 3, -1, -1)


def initial_image(c: torch.Tensor, o: StyleOptions, gen: torch.Generator) -> torch.Tensor:
    if o.init == "content":
        return c.clone()
    noise = torch.rand(c.shape, generator=gen).to(c)
    if o.init == "noise":
        return noise
    return ((1 - o.noise_ratio) * c + o.noise_ratio * noise).clamp(0, 1)


def optimize_level(x, objective, o: StyleOptions, level: Level, scales: int, emit, c_yiq=None):
    """Optimise the pixels of x at one level; emit a StepEvent per step (per loss evaluation
    for L-BFGS); returns the result, detached."""
    loss_fn = objective
    if o.compile:
        mode = o.compile if isinstance(o.compile, str) else None
        loss_fn = torch.compile(objective, mode=mode, dynamic=False)
    x = x.detach().clone().requires_grad_(True)

    def report(step: int, total, terms, v: torch.Tensor) -> None:
        logged = step % LOG_EVERY == 0 or step == level.steps - 1
        render = lambda: imaging.to_pil(imaging.compose(v.clamp(0, 1), c_yiq))  # noqa: E731
        emit(
            StepEvent(
                level.index, scales, step, level.steps, level.size, logged, total, terms, render
            )
        )

    if o.optimizer == "adam":
        _adam(x, loss_fn, o.lr, level.steps, report)
    else:
        _lbfgs(x, loss_fn, level.steps, report)
    return x.detach()


def _adam(x: torch.Tensor, loss_fn, lr: float, steps: int, report) -> None:
    opt = torch.optim.Adam([x], lr=lr)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        total, terms = loss_fn(x)
        total.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        report(step, total, terms, x.detach())


def _lbfgs(x: torch.Tensor, loss_fn, steps: int, report) -> None:
    """L-BFGS with a strong-Wolfe line search; `steps` counts loss evaluations."""
    opt = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=20,
        history_size=50,
        line_search_fn="strong_wolfe",
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )
    evals = 0

    def closure():
        nonlocal evals
        opt.zero_grad(set_to_none=True)
        total, terms = loss_fn(x)
        total.backward()
        report(evals, total, terms, x.detach())
        evals += 1
        return total

    while evals < steps:
        left = steps - evals
        opt.param_groups[0]["max_iter"] = min(20, left)
        opt.param_groups[0]["max_eval"] = left
        before = evals
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        if evals == before:  # converged: nothing left to do
            break
