"""The paper's UNet (2D or 3D) and its conditional wrapper.

Layout in 3D is (N, C, Z, X, Y) with Z axial. Down- and up-sampling act on the
two in-plane axes only, so the axial size of a patch never changes.

The decoder follows the paper's wiring, which differs from guided-diffusion's:
skips are consumed in reverse order, each decoder block sees the concatenation
of the current features with the matching skip (both C channels, 2C in total)
and maps it to the channel count of the next skip to be consumed (the very last
block keeps C). Because of that, ``state_dict`` keys and shapes match the
released checkpoint exactly (see tests/test_reference_fixture.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .nn import avg_pool_nd, conv_nd, maybe_checkpoint, normalization, timestep_embedding, zero_module


class TimestepBlock(nn.Module):
    """A module whose ``forward`` takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """``nn.Sequential`` that hands the embedding to the children that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


def _resample_factor(dims: int) -> int | tuple[int, ...]:
    """Stride of one resampling step: 2 everywhere in 1D/2D, in-plane only in 3D."""
    return (1, 2, 2) if dims == 3 else 2


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 (in-plane only in 3D), optionally followed by a 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.dims = dims
        self.use_conv = use_conv
        if use_conv:
            self.conv = conv_nd(dims, self.channels, self.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Downsampling by 2 (in-plane only in 3D): strided 3x3 conv, or average pooling."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        stride = _resample_factor(dims)
        if use_conv:
            self.op = conv_nd(dims, self.channels, self.out_channels, 3, stride=stride, padding=1)
        else:
            if self.channels != self.out_channels:
                raise ValueError("average-pool downsampling cannot change the channel count")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding.

    GroupNorm -> SiLU -> conv, then the embedding is added (or applied as a
    FiLM scale and shift of the second norm), GroupNorm -> SiLU -> dropout ->
    zero-initialised conv; the input joins through identity or a 1x1 conv.
    With ``up``/``down`` the block also resamples, between norm and first conv.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        dims: int = 2,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm

        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            conv_nd(dims, channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()

        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels),
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self._forward, (x, emb), self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        emb_out = emb_out.reshape(emb_out.shape + (1,) * (h.ndim - emb_out.ndim))
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions (off in the paper's preset)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, use_checkpoint: bool = False):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self._forward, (x,), self.use_checkpoint)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        # Heads are split before q/k/v (the original guided-diffusion order), so
        # checkpoints trained with it keep their meaning.
        length = qkv.shape[-1]
        q, k, v = qkv.reshape(b * self.num_heads, 3 * c // self.num_heads, length).chunk(3, dim=1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = h.transpose(1, 2).reshape(b, c, length)
        return (flat + self.proj_out(h)).reshape(b, c, *spatial)


class UNetModel(nn.Module):
    """Timestep-conditioned UNet predicting noise (and optionally variance) of ``x_t``.

    Args:
        in_channels / out_channels: channels of the input and output tensors.
        model_channels: base width C; level ``l`` has ``C * channel_mult[l]`` channels.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: down-sampling rates (1, 2, 4, ...) that get self-attention.
        channel_mult: width multiplier per level; ``len(channel_mult) - 1`` down-samplings.
        conv_resample: strided conv / conv after upsampling instead of plain pooling/nearest.
        dims: 2 for images, 3 for volumes (N, C, Z, X, Y), in-plane resampling only.
        num_classes: if set, class-conditional with a learned label embedding.
        use_checkpoint: gradient checkpointing of residual and attention blocks.
        use_fp16: run the body under float16 autocast on CUDA (inference speed/memory).
        num_heads / num_head_channels / num_heads_upsample: attention head layout.
        use_scale_shift_norm: FiLM-style conditioning on the timestep embedding.
        resblock_updown: resample with residual blocks instead of plain layers.
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
    ):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.channel_mult = tuple(channel_mult)
        self.dims = dims
        self.num_classes = num_classes
        self.use_fp16 = use_fp16

        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res_block(ch_in: int, ch_out: int, **updown) -> ResBlock:
            return ResBlock(
                ch_in, emb_dim, dropout, out_channels=ch_out, dims=dims, use_checkpoint=use_checkpoint,
                use_scale_shift_norm=use_scale_shift_norm, **updown,
            )

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, num_head_channels, use_checkpoint=use_checkpoint)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        rate = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res_block(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if rate in attention_resolutions:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = res_block(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, dims)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                rate *= 2

        middle: list[nn.Module] = [res_block(ch, ch)]
        if rate in attention_resolutions:
            middle.append(attention(ch, num_heads))
        middle.append(res_block(ch, ch))
        self.middle_block = TimestepEmbedSequential(*middle)

        self.output_blocks = nn.ModuleList([])
        for level in reversed(range(len(channel_mult))):
            for i in range(num_res_blocks + 1):
                skip = skip_channels.pop()
                ch_out = skip_channels[-1] if skip_channels else ch
                layers = [res_block(ch + skip, ch_out)]
                ch = ch_out
                if rate in attention_resolutions:
                    layers.append(attention(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res_block(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, dims))
                    rate //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(conv_nd(dims, ch, out_channels, 3, padding=1)),
        )

    @property
    def spatial_divisor(self) -> int:
        """In-plane sizes must be multiples of this (2 to the number of down-samplings)."""
        return 2 ** (len(self.channel_mult) - 1)

    def convert_to_fp16(self) -> None:
        """Run the body in float16 from now on, as the paper's scripts ask (``if use_fp16: model.convert_to_fp16()``).

        The paper cast the body's weights to float16. Here the weights stay
        float32 (``state_dict`` keys, shapes and dtypes unchanged, so weights load
        and save as before) and the switch is ``use_fp16``: the forward pass runs
        under float16 autocast on CUDA, and in float32 on a CPU, which has no fast
        float16 kernels (the one rule of :mod:`guided_diffusion.precision`).
        """
        self.use_fp16 = True

    def convert_to_fp32(self) -> None:
        """Run the body in float32 again (undoes :meth:`convert_to_fp16`)."""
        self.use_fp16 = False

    def _autocast(self, x: torch.Tensor):
        if self.use_fp16 and x.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the model output for ``x`` at ``timesteps``.

        Args:
            x: (N, in_channels, Z, X, Y) in 3D, (N, in_channels, H, W) in 2D.
            timesteps: (N,) timesteps (integers or rescaled floats).
            y: (N,) class labels, only for class-conditional models.

        Returns:
            (N, out_channels, ...) with the spatial shape of ``x``.
        """
        divisor = self.spatial_divisor
        if any(s % divisor for s in x.shape[-2:]):
            raise ValueError(
                f"in-plane size {tuple(x.shape[-2:])} must be divisible by {divisor} "
                f"(2 ** {len(self.channel_mult) - 1} down-samplings); pad the input"
            )
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y exactly when the model is class-conditional")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        with self._autocast(x):
            skips = []
            h = x
            for block in self.input_blocks:
                h = block(h, emb)
                skips.append(h)
            h = self.middle_block(h, emb)
            for block in self.output_blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            return self.out(h).type(x.dtype)


class SuperResModel(UNetModel):
    """The conditional UNet of the paper: the low-dose volume is concatenated to ``x_t``.

    Call as ``model(x_t, timesteps, low_res=low_dose)``, both (N, C, Z, X, Y) of the
    same shape; ``in_channels`` is the number of image channels (1 for PET).
    """

    def __init__(self, in_channels: int, *args, **kwargs):
        super().__init__(in_channels * 2, *args, **kwargs)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, low_res: torch.Tensor = None, **kwargs) -> torch.Tensor:
        if low_res is None:
            raise ValueError("SuperResModel needs the conditioning volume: model(x, t, low_res=...)")
        if low_res.shape != x.shape:
            raise ValueError(f"low_res shape {tuple(low_res.shape)} differs from x shape {tuple(x.shape)}")
        return super().forward(torch.cat([x, low_res.type(x.dtype)], dim=1), timesteps, **kwargs)
