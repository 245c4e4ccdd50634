"""Small, well-formed stand-ins for the files the video and 3D apps return (the emulator renders no video or mesh).

Each has the right magic bytes for its content type: a GLB with a valid glTF 2.0 header and JSON chunk, an ASCII
PLY tetrahedron, an MP4 ``ftyp`` box, a WebM EBML header, and real zip archives.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

__all__ = [
    "GLB_CONTENT_TYPE",
    "PLY_CONTENT_TYPE",
    "VIDEO_CONTENT_TYPES",
    "ZIP_CONTENT_TYPE",
    "glb",
    "ply",
    "video",
    "zip_of",
]

GLB_CONTENT_TYPE = "model/gltf-binary"
PLY_CONTENT_TYPE = "application/octet-stream"
ZIP_CONTENT_TYPE = "application/zip"
VIDEO_CONTENT_TYPES = {"X264 (.mp4)": ("video/mp4", "mp4"), "VP9 (.webm)": ("video/webm", "webm")}


def glb(extras: dict[str, Any] | None = None) -> bytes:
    """A minimal valid binary glTF 2.0 file (header + JSON chunk, no meshes)."""
    document: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "fal emulator"},
        "scenes": [{"nodes": []}],
        "scene": 0,
    }
    if extras:
        document["asset"]["extras"] = extras
    chunk = json.dumps(document, separators=(",", ":")).encode()
    chunk += b" " * (-len(chunk) % 4)
    total = 12 + 8 + len(chunk)
    return struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(chunk), b"JSON") + chunk


def ply(scale: float = 1.0) -> bytes:
    """An ASCII PLY tetrahedron."""
    vertices = [(0, 0, 0), (scale, 0, 0), (0, scale, 0), (0, 0, scale)]
    faces = [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)]
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines += [" ".join(f"{v:g}" for v in vertex) for vertex in vertices]
    lines += ["3 " + " ".join(map(str, face)) for face in faces]
    return ("\n".join(lines) + "\n").encode()


def video(output_type: str) -> tuple[bytes, str, str]:
    """Placeholder video bytes, content type and file extension for ``video_output_type``."""
    content_type, extension = VIDEO_CONTENT_TYPES.get(output_type, VIDEO_CONTENT_TYPES["X264 (.mp4)"])
    if extension == "mp4":
        data = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    else:
        header = bytes.fromhex("4286810142f7810142f2810442f381084282847765626d")
        data = bytes.fromhex("1a45dfa3") + bytes([0x80 | len(header)]) + header
    return data, content_type, extension


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()
