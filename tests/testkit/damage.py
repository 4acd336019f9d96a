"""Damage a results folder's files the way a disk or a careless copy does (tests only)."""

from __future__ import annotations

import pyarrow.parquet as pq

from orchestrator.checkpoint import DirectoryCheckpointer


class StopAt(DirectoryCheckpointer):
    """Saves checkpoints like the sweep does, then stops the trial after the one at ``step``."""

    def __init__(self, directory: str, step: int) -> None:
        super().__init__(directory)
        self.stop = step

    def save(self, state, metrics):
        super().save(state, metrics)
        if state["progress"]["step"] == self.stop:
            raise KeyboardInterrupt


def flip_bit_in_column(path: str, column: str) -> int:
    """Flip one bit inside a page of ``column`` in the Parquet file ``path`` (its dictionary page's
    values when it has one, else its data page), leaving the file's structure readable; the offset."""
    chunk = pq.ParquetFile(path).metadata.row_group(0)
    meta = next(chunk.column(i) for i in range(chunk.num_columns) if chunk.column(i).path_in_schema == column)
    # The last byte of a page is always the page's own data (its header comes first).
    end = meta.data_page_offset if meta.has_dictionary_page else meta.data_page_offset + meta.total_compressed_size
    offset = end - 1
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x08]))
    return offset
