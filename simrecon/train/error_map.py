"""Where the training images are still wrong: a per-tile error map that steers part of the pixel sampling.

Uniform pixel sampling spends most rays on what is already learnt (road, flat facades) and few on what is not:
edges, far texture, and content seen only in a strip of a few images (the top rows of a side camera, where a
tall building's upper floors appear and nothing else sees them). Instant-NGP samples training pixels by a
running error map; so does this: every image is cut into square tiles, each tile keeps a running mean of the
squared error of the pixels drawn in it, and a share of each batch is drawn tile ~ error, pixel uniform in
the tile. Tiles start at the largest possible error, so every tile is visited before the map means anything.
The rest of the batch stays uniform, so nothing is starved.
"""

from __future__ import annotations

import torch


class ErrorMap:
    """Running squared error per tile of every training image; ``sample`` draws pixels by it.

    Pixels are flat indices into the images concatenated row-major (``offsets`` [F + 1]: image f owns
    ``offsets[f]:offsets[f + 1]``), the layout of :class:`~simrecon.train.data.TrainData`.
    """

    def __init__(self, offsets: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor, tiles_across: int = 32,
                 decay: float = 0.5):
        if tiles_across < 1:
            raise ValueError(f"error map: tiles_across must be >= 1, got {tiles_across}")
        self.offsets = offsets.long()  # [F + 1]
        self.h, self.w = heights.long(), widths.long()  # [F]
        self.tile = torch.clamp((self.w + tiles_across - 1) // tiles_across, min=1)  # [F] tile side in pixels
        self.tiles_x = (self.w + self.tile - 1) // self.tile  # [F]
        tiles_y = (self.h + self.tile - 1) // self.tile
        count = self.tiles_x * tiles_y
        self.tile_offsets = torch.cat([torch.zeros(1, dtype=torch.long), count.cumsum(0)])  # [F + 1]
        self.decay = decay
        self.error = torch.ones(int(self.tile_offsets[-1]))  # [tiles]; 1 = the largest squared error of [0, 1] RGB

    def tile_of(self, flat: torch.Tensor) -> torch.Tensor:
        """Tile index [n] of flat pixel indices [n]."""
        frame = torch.searchsorted(self.offsets, flat, right=True) - 1
        local = flat - self.offsets[frame]
        row, col = local // self.w[frame], local % self.w[frame]
        t = self.tile[frame]
        return self.tile_offsets[frame] + (row // t) * self.tiles_x[frame] + col // t

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` flat pixel indices: a tile with probability ~ its error, then a uniform pixel inside it."""
        # the floor keeps a perfectly fit map (every tile at 0) drawable: it is then uniform
        tiles = torch.multinomial(self.error.clamp(min=1e-12), n, replacement=True, generator=gen)
        frame = torch.searchsorted(self.tile_offsets, tiles, right=True) - 1
        local_tile = tiles - self.tile_offsets[frame]
        t, w, h = self.tile[frame], self.w[frame], self.h[frame]
        r0, c0 = (local_tile // self.tiles_x[frame]) * t, (local_tile % self.tiles_x[frame]) * t
        th, tw = torch.minimum(t, h - r0), torch.minimum(t, w - c0)  # edge tiles are cut by the image border
        u = torch.rand(n, 2, generator=gen)
        row = r0 + (u[:, 0] * th).long().clamp(max=th - 1)
        col = c0 + (u[:, 1] * tw).long().clamp(max=tw - 1)
        return self.offsets[frame] + row * w + col

    def update(self, flat: torch.Tensor, sq_error: torch.Tensor) -> None:
        """Fold the squared errors [n] (mean over RGB) of pixels [n] into their tiles' running means."""
        tiles = self.tile_of(flat.cpu())
        err = sq_error.detach().float().cpu()
        sums = torch.zeros_like(self.error).index_add_(0, tiles, err)
        counts = torch.zeros_like(self.error).index_add_(0, tiles, torch.ones_like(err))
        hit = counts > 0
        self.error[hit] = (1 - self.decay) * self.error[hit] + self.decay * sums[hit] / counts[hit]
