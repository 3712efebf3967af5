"""The bundled sample volumes as Slicer's Sample Data module sources: file URI, node name, SHA-256
checksum and thumbnail (``SampleData.SampleDataLogic.registerCustomSampleDataSource`` keywords).
Slicer-free; :mod:`.resources` registers them."""

from __future__ import annotations

import hashlib
from pathlib import Path

CATEGORY = "LargeKernelSeg"
ICONS = Path(__file__).resolve().parent.parent / "Resources" / "Icons"
#: file name under the bundled Resources/Data -> (name shown, node name, SHA-256, thumbnail)
SAMPLES = {
    "sample_ct.nii.gz": ("LargeKernelSeg abdominal CT", "LargeKernelSegSampleCT",
                         "e50c00b2914e2cac0aaee8e7f3b5f57d44d9f21bfd5c0577271c54c0cb49e9fb", "SampleCT.png"),
    "sample_mr_t2.nii.gz": ("LargeKernelSeg abdominal T2 MR (CHAOS, CC BY-NC-SA)", "LargeKernelSegSampleMRT2",
                            "8fac03aadebfcf858a88b7c68eba4242217339680700427c7b89bc9f74e20058", "SampleMRT2.png"),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_sources(data_dir: Path | None) -> list[dict]:
    """Keyword arguments of one ``registerCustomSampleDataSource`` call per bundled sample found in
    ``data_dir`` (none when the installation has no bundled data)."""
    sources = []
    for file_name, (title, node_name, sha256, thumbnail) in SAMPLES.items():
        path = Path(data_dir) / file_name if data_dir else None
        if path is None or not path.is_file():
            continue
        sources.append({"category": CATEGORY, "sampleName": title, "uris": path.resolve().as_uri(),
                        "fileNames": file_name, "nodeNames": node_name, "checksums": f"SHA256:{sha256}",
                        "thumbnailFileName": str(ICONS / thumbnail), "loadFileTypes": "VolumeFile"})
    return sources
