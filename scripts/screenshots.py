"""Screenshots of the desktop viewer's main states for the README and the extension page.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py``).
Writes ``Resources/Screenshots/viewer_{empty,segmented,editing,finetuning}.png``: the bundled
sample CT segmented with the bundled default model, a brush correction, and a short fine-tuning
job on a temporary dataset holding the corrected case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wait(app, until, timeout: float) -> bool:
    t0 = time.time()
    while not until() and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(0.03)
    for _ in range(10):
        app.processEvents()
    return until()


def shot(app, win, path: Path) -> None:
    """Grab the window from the screen (so the OpenGL 3D view is included), as an 8-bit-palette PNG."""
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    screen = app.primaryScreen()
    pix = screen.grabWindow(win.winId())
    if pix.isNull() or pix.width() < 10:
        pix = win.grab()
    tmp = path.with_suffix(".full.png")
    pix.toImage().save(str(tmp), "PNG", 9)
    try:  # an adaptive 256-colour palette keeps each PNG well under 300 KB
        from PIL import Image as PILImage

        PILImage.open(tmp).convert("RGB").quantize(256, method=PILImage.Quantize.MEDIANCUT).save(path, optimize=True)
        tmp.unlink()
    except ImportError:
        tmp.replace(path)
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "Resources" / "Screenshots")
    ap.add_argument("--steps", type=int, default=16, help="fine-tuning steps for the fine-tuning screenshot")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from PyQt5.QtCore import QPoint, Qt
    from PyQt5.QtTest import QTest
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from lkseg.viewer.app import MainWindow
    from lkseg.viewer.theme import apply_dark_theme

    apply_dark_theme(app)
    tmp = Path(tempfile.mkdtemp(prefix="lkseg-shots-"))
    import os

    os.environ.setdefault("LKSEG_SETTINGS_DIR", str(tmp / "settings"))
    win = MainWindow()
    win.resize(1500, 920)
    win.export_panel.dataset_edit.setText(str(tmp / "dataset"))
    win.show()
    wait(app, lambda: win.isVisible(), 5)
    shot(app, win, args.out / "viewer_empty.png")

    win.open_sample()
    win.segment_panel.start()
    if not wait(app, lambda: not win.segment_panel.busy and win.segment_panel.last_result is not None, 300):
        print("segmentation did not finish:", win.segment_panel.status.text())
        return 1
    shot(app, win, args.out / "viewer_segmented.png")

    # editing: paint a stroke with the first organ on the axial view
    view = win.views[0]
    win.set_tool("paint")
    win.radius.setValue(3)
    names = list(win.state.table.names)
    organ = "left kidney" if "left kidney" in names else names[0]
    win.segment_list.selectRow(names.index(organ))
    r = view.image_rect()
    a = QPoint(int(r.x() + r.width() * 0.63), int(r.y() + r.height() * 0.58))
    b = QPoint(int(r.x() + r.width() * 0.70), int(r.y() + r.height() * 0.70))
    QTest.mousePress(view, Qt.LeftButton, Qt.NoModifier, a)
    for t in range(1, 11):
        QTest.mouseMove(view, a + (b - a) * (t / 10))
    QTest.mouseRelease(view, Qt.LeftButton, Qt.NoModifier, b)
    QTest.mouseMove(view, b + QPoint(30, 8))
    win.update_3d()
    win.statusBar().showMessage(f"Painted '{organ}' with a 3-voxel brush (Ctrl+Z to undo)")
    shot(app, win, args.out / "viewer_editing.png")

    # fine-tuning: export the corrected case, start a short job, wait for a few steps
    win.set_tool("navigate")
    win.export_panel.export_to_dataset()
    win.tabs.setCurrentWidget(win.finetune_panel)
    fp = win.finetune_panel
    fp.steps.setValue(args.steps)
    fp.val_every.setValue(max(1, args.steps // 4))
    fp.device.setCurrentText("cpu")
    fp.start()
    wait(app, lambda: fp.state != "running", 240)
    fp.poll()
    win.statusBar().showMessage(f"Fine-tuning job {fp.job.name}: {fp.state}")
    shot(app, win, args.out / "viewer_finetuning.png")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
