"""The local dataset of corrected cases, in the Medical Segmentation Decathlon / nnU-Net layout.

A dataset is a folder::

    ROOT/
      dataset.json               name, labels, modality, numTraining, training file list
      imagesTr/<case>_0000.nii.gz
      labelsTr/<case>.nii.gz
      imagesTr/history/, labelsTr/history/   earlier versions of re-exported cases
      .lock                      lock file serialising writers

``dataset.json`` carries the nnU-Net v2 keys (``labels`` as ``{"background": 0, name: value}``,
``channel_names``, ``file_ending``, ``numTraining``) and the MSD keys (``modality``,
``training`` as ``[{"image", "label"}]``), so nnU-Net, MONAI's ``load_decathlon_datalist`` and
our trainer all read it. Our full label table (colours, terminology codes) is stored under
``lkseg_labels``.

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``);
``dataset.json`` is read-modified-written under an exclusive ``fcntl.flock`` on ``ROOT/.lock``,
so several processes can add cases at the same time. A re-exported case never silently
overwrites the earlier version: the previous label map (and the previous image, if it differs)
moves to ``history/``."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lkseg.dataset.files import (
    FILE_ENDING,
    DatasetError,
    _keep_in_history,
    _locked,
    _same_geometry,
    read_header,
    read_nifti,
)
from lkseg.dataset.label_tables import (
    empty_dataset_json,
    renumber_by_name,
    table_conflicts,
    table_from_json,
)
from lkseg.io.image import Image
from lkseg.io.imageio import write_image
from lkseg.utils.atomic import atomic_write_json

log = logging.getLogger(__name__)


DATASET_JSON = "dataset.json"


_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------- the dataset
class LocalDataset:
    """A local MSD/nnU-Net style dataset folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not (self.root / DATASET_JSON).is_file():
            raise DatasetError(f"{self.root} is not a dataset: it has no {DATASET_JSON} "
                               "(create one with `lkseg dataset add ... --dataset DIR`)")

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, root: str | os.PathLike, table: Any, name: str | None = None,
               description: str = "", modality: str = "CT") -> "LocalDataset":
        """Create an empty dataset with label table ``table``.

        If ``root`` already holds a dataset with a compatible table it is opened instead;
        a dataset with a different table is refused.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root):
            if (root / DATASET_JSON).is_file():
                ds = cls(root)
                problems = table_conflicts(table, ds.table)
                if problems or len(table.values) != len(ds.table.values):
                    raise DatasetError(f"{root} already holds a dataset with another label table "
                                       f"({'; '.join(problems) or 'different labels'}); use another folder")
                return ds
            (root / "imagesTr").mkdir(exist_ok=True)
            (root / "labelsTr").mkdir(exist_ok=True)
            atomic_write_json(root / DATASET_JSON, empty_dataset_json(table, name or root.name, description, modality))
        log.info("created dataset %s", root)
        return cls(root)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, table: Any, name: str | None = None) -> "LocalDataset":
        root = Path(root)
        if (root / DATASET_JSON).is_file():
            return cls(root)
        return cls.create(root, table, name=name)

    # ------------------------------------------------------------ reading
    def read_json(self) -> dict:
        path = self.root / DATASET_JSON
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {path}: {exc}") from None

    @property
    def name(self) -> str:
        return str(self.read_json().get("name", self.root.name))

    @property
    def table(self) -> Any:
        """The dataset's :class:`lkseg.checkpoint.labels.LabelTable`."""
        return table_from_json(self.read_json(), self.root / DATASET_JSON)

    def cases(self) -> list[str]:
        """Case ids in the order of ``dataset.json``'s training list."""
        return [_case_id_of(entry["label"]) for entry in self.read_json().get("training", [])]

    def image_path(self, case_id: str) -> Path:
        return self.root / "imagesTr" / f"{case_id}_0000{FILE_ENDING}"

    def label_path(self, case_id: str) -> Path:
        return self.root / "labelsTr" / f"{case_id}{FILE_ENDING}"

    def datalist(self, case_ids: list[str] | None = None) -> list[dict[str, str]]:
        """``[{"case", "image", "label"}]`` with absolute paths (MONAI dictionary style)."""
        ids = self.cases() if case_ids is None else case_ids
        return [{"case": c, "image": str(self.image_path(c)), "label": str(self.label_path(c))} for c in ids]

    def read_case(self, case_id: str) -> tuple[Image, Image]:
        if case_id not in self.cases():
            raise DatasetError(f"{self.root} has no case {case_id!r}; cases: {', '.join(self.cases())}")
        return read_nifti(self.image_path(case_id)), read_nifti(self.label_path(case_id))

    # ------------------------------------------------------------ adding
    def add_case(self, image: Image, labels: Image, table: Any, case_id: str | None = None,
                 map_by_name: bool = False) -> str:
        """Add (or re-export) a case; returns its id.

        ``labels`` must lie on ``image``'s grid and hold only values of ``table``. A ``table``
        that disagrees with the dataset's (same value, different name; unknown name) is refused,
        or, with ``map_by_name``, its values are renumbered to the dataset's by label name.
        """
        if case_id is not None and not _CASE_ID.match(case_id):
            raise DatasetError(f"case id {case_id!r} is not valid: use letters, digits, '_', '-' or '.'")
        if not labels.same_grid(image):
            raise DatasetError(
                f"the label map is not on the image's grid (image {image.size_ijk} voxels, spacing "
                f"{image.spacing}, origin {image.origin}; labels {labels.size_ijk}, spacing {labels.spacing}, "
                f"origin {labels.origin}); resample the labels onto the image first")
        lab = np.asarray(labels.array)
        if not np.issubdtype(lab.dtype, np.integer):
            if not np.all(np.equal(np.mod(lab, 1), 0)):
                raise DatasetError("the label map holds non-integer values; it must be an integer label map")
            lab = lab.astype(np.int64)
        present = set(int(v) for v in np.unique(lab)) - {0}
        unknown = sorted(present - set(int(v) for v in table.values))
        if unknown:
            raise DatasetError(f"the label map holds values {unknown} that its label table "
                               f"{getattr(table, 'name', '') or ''} does not list; fix the table or the labels")

        with _locked(self.root):
            data = self.read_json()
            ds_table = table_from_json(data, self.root / DATASET_JSON)
            conflicts = table_conflicts(table, ds_table, only_values=present)
            if conflicts and not map_by_name:
                raise DatasetError(
                    f"the label table disagrees with the dataset {self.root}'s: {'; '.join(conflicts)}. "
                    "Relabel the case, or pass map_by_name (CLI: --map-by-name) to renumber labels by name")
            if map_by_name:
                lab = renumber_by_name(lab, table, ds_table, present)
            out_dtype = np.uint8 if ds_table.num_classes <= 256 else np.uint16
            label_img = labels.with_array(lab.astype(out_dtype))

            existing = self.cases()
            if case_id is None:
                case_id = _next_case_id(existing, self.root)
            img_path, lab_path = self.image_path(case_id), self.label_path(case_id)
            img_path.parent.mkdir(exist_ok=True)
            lab_path.parent.mkdir(exist_ok=True)

            image_changed = True
            if img_path.exists():
                old = read_nifti(img_path)
                if old.same_grid(image) and old.array.dtype == image.array.dtype and np.array_equal(old.array, image.array):
                    image_changed = False
                else:
                    kept = _keep_in_history(img_path, f"{case_id}_0000")
                    log.info("case %s: the earlier image differs; kept as %s", case_id, kept)
            if lab_path.exists():
                kept = _keep_in_history(lab_path, case_id)
                log.info("case %s re-exported; earlier labels kept as %s", case_id, kept)
            if image_changed:
                write_image(image, img_path)
            write_image(label_img, lab_path)

            entry = {"image": f"./imagesTr/{img_path.name}", "label": f"./labelsTr/{lab_path.name}"}
            training = [e for e in data.get("training", []) if _case_id_of(e["label"]) != case_id]
            training.append(entry)
            data["training"] = training
            data["numTraining"] = len(training)
            atomic_write_json(self.root / DATASET_JSON, data)
        log.info("added case %s to %s", case_id, self.root)
        return case_id

    # ------------------------------------------------------------ checking
    def check(self) -> list[str]:
        """Problems found in the dataset (an empty list when it is sound)."""
        problems: list[str] = []
        try:
            data = self.read_json()
        except DatasetError as exc:
            return [str(exc)]
        try:
            table = table_from_json(data, self.root / DATASET_JSON)
            known = set(int(v) for v in table.values) | {0}
        except DatasetError as exc:
            problems.append(str(exc))
            known = None
        training = data.get("training", [])
        if data.get("numTraining") != len(training):
            problems.append(f"numTraining is {data.get('numTraining')} but {len(training)} cases are listed")
        listed: set[Path] = set()
        for entry in training:
            try:
                img_path = (self.root / entry["image"]).resolve()
                lab_path = (self.root / entry["label"]).resolve()
            except (KeyError, TypeError):
                problems.append(f"malformed training entry {entry!r}")
                continue
            case = _case_id_of(entry["label"])
            outside = [rel for rel, p in ((entry["image"], img_path), (entry["label"], lab_path))
                       if not p.is_relative_to(self.root.resolve())]
            if outside:  # never read what the user did not put in the dataset
                problems.append(f"case {case}: {', '.join(map(str, outside))} points outside the dataset folder; "
                                "not read (cases must live in imagesTr/ and labelsTr/)")
                continue
            listed |= {img_path, lab_path}
            missing = [p for p in (img_path, lab_path) if not p.is_file()]
            for p in missing:
                problems.append(f"case {case}: missing file {p.relative_to(self.root.resolve())}")
            if missing:
                continue
            try:
                img_info, lab_info = read_header(img_path), read_header(lab_path)
            except RuntimeError as exc:
                problems.append(f"case {case}: unreadable file ({str(exc).strip().splitlines()[-1]})")
                continue
            if not _same_geometry(img_info, lab_info):
                problems.append(f"case {case}: label geometry differs from the image "
                                f"(image size {img_info[0]} spacing {img_info[1]} origin {img_info[2]}; "
                                f"labels size {lab_info[0]} spacing {lab_info[1]} origin {lab_info[2]})")
            if known is not None:
                values = set(int(v) for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(lab_path)))))
                bad = sorted(values - known)
                if bad:
                    problems.append(f"case {case}: unknown label values {bad} (not in the dataset's label table)")
        for folder in ("imagesTr", "labelsTr"):
            d = self.root / folder
            if not d.is_dir():
                problems.append(f"missing folder {folder}/")
                continue
            for f in sorted(d.iterdir()):
                if f.is_file() and not f.name.startswith(".") and f.resolve() not in listed:
                    problems.append(f"file {folder}/{f.name} is not listed in {DATASET_JSON}")
        return problems

    def __repr__(self) -> str:
        return f"LocalDataset({str(self.root)!r})"


def _next_case_id(existing: list[str], root: Path) -> str:
    n = len(existing)
    while True:
        cid = f"case_{n:04d}"
        if cid not in existing and not (root / "labelsTr" / f"{cid}{FILE_ENDING}").exists():
            return cid
        n += 1


def _case_id_of(label_rel: str) -> str:
    name = Path(label_rel).name
    return name[: -len(FILE_ENDING)] if name.endswith(FILE_ENDING) else Path(name).stem
