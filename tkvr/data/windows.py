"""Long videos as windows: each video read once, front to back, by timestamps, into the clips of
windows of --window seconds every --stride seconds (`Windows`, the dataset `tkvr predict --window`
reads through a DataLoader), and the arithmetic of where windows start."""

from __future__ import annotations

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tkvr.data.sampling import segment_indices
from tkvr.data.video import UnreadableVideo, kind_of, open_reader, reason


def window_starts(begin: float, end: float, window: float, stride: float) -> list[float]:
    """Starts of the windows [s, s + window) every `stride` seconds from `begin`, and one more
    ending at `end` when the stride leaves the tail uncovered; a video shorter than one window is
    one window, the whole of it."""
    if end - begin < window + 1e-9:
        return [begin]
    starts = [begin + i * stride for i in range(int((end - begin - window) / stride + 1e-9) + 1)]
    if starts[-1] + window < end - 1e-6:
        starts.append(end - window)
    return starts


def window_times(start: float, window: float, frames: int) -> list[float]:
    """The clip of a window as eval samples a 1-clip view, in time: T equal segments, the start of
    each (the released test protocol's first frame of each segment, tkvr.data.sampling)."""
    return [start + j * window / frames for j in range(frames)]


def too_short(path: str, window: float, frames: int, n: int, begin: float, end: float) -> str | None:
    """Why `window` seconds cannot fill `frames` distinct frames of a video of n frames, or None."""
    fps = n / max(end - begin, 1e-9)
    if window * fps + 1e-6 >= frames or n < frames:  # a video with fewer frames than T repeats them anyway
        return None
    return (
        f"--window {window:g}: {path} has {fps:.3g} frames per second, so a window holds about "
        f"{window * fps:.1f} frames; --frames {frames} needs --window {frames / fps:.3g} or more"
    )


class Windows(IterableDataset):
    """Each video read once, front to back: its windows' clips in chunks of about `chunk` windows,
    {index, start [n], video [n, S, T, 3, H, W], windows, last}; or {index, error}. Still images
    and frame folders are one window each (start 0, end 0). Workers take every W-th video."""

    def __init__(self, paths, frames, window, stride, transform, decoder, chunk):
        self.paths, self.frames, self.window, self.stride = paths, frames, window, stride
        self.transform, self.decoder, self.chunk = transform, decoder, chunk

    def __iter__(self):
        info = get_worker_info()
        mine = range(len(self.paths)) if info is None else range(info.id, len(self.paths), info.num_workers)
        for i in mine:
            yield from self._video(i)

    def _video(self, i: int):
        path, t = self.paths[i], self.frames
        try:
            reader = open_reader(path, self.decoder)
        except (UnreadableVideo, FileNotFoundError) as e:
            yield {"index": i, "error": reason(path, e)}
            return
        try:
            if kind_of(path) != "video":
                x = reader.read(segment_indices(len(reader), t, False))[None]  # [1, T, 3, H, W]
                yield self._item(i, [0.0], [0.0], x, 1, True)
                return
            begin, end = reader.span()
            why = too_short(path, self.window, t, len(reader), begin, end)
            if why:
                yield {"index": i, "error": why}
                return
            yield from self._windows(i, reader, begin, end)
        except UnreadableVideo as e:
            yield {"index": i, "error": str(e)}
        finally:
            reader.close()

    def _windows(self, i: int, reader, begin: float, end: float):
        """The frames every window needs, asked for in time order in batches of about `chunk`
        windows' worth, so the decoder only moves forward; a window leaves as soon as its frames
        are in, and a frame is kept only while a window still to come needs it (windows overlap)."""
        t, span = self.frames, min(self.window, end - begin)
        starts = window_starts(begin, end, self.window, self.stride)
        need = [window_times(s, span, t) for s in starts]
        order = sorted({x for times in need for x in times})
        have: dict[float, torch.Tensor] = {}
        done = 0
        for c in range(0, len(order), self.chunk * t):
            part = order[c : c + self.chunk * t]
            have.update(zip(part, reader.read_at(part)))  # [3, H, W] each
            ready = []
            while done < len(starts) and need[done][-1] <= part[-1]:
                ready.append(done)
                done += 1
            if ready:
                x = torch.stack([torch.stack([have[x] for x in need[w]]) for w in ready])  # [n, T, 3, H, W]
                ends = [min(starts[w] + self.window, end) for w in ready]
                yield self._item(i, [starts[w] for w in ready], ends, x, len(starts), done == len(starts))
            if done < len(starts):
                have = {x: f for x, f in have.items() if x >= need[done][0]}

    def _item(self, i, starts, ends, x, windows, last):
        video = torch.stack([self.transform(c) for c in x])  # [n, S, T, 3, H, W]
        return {"index": i, "start": starts, "end": ends, "video": video, "windows": windows, "last": last}
