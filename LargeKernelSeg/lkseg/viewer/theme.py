"""The viewer's dark theme (a Fusion palette plus a small style sheet)."""

from __future__ import annotations

from PyQt5.QtGui import QColor, QPalette
from PyQt5.QtWidgets import QApplication

STYLE = """
QWidget { font-size: 10pt; }
QGroupBox { border: 1px solid #2c323c; border-radius: 6px; margin-top: 14px; padding: 8px 6px 6px 6px;
            font-weight: bold; color: #cfd6e0; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #7fb8ff; }
QPushButton { background: #2a303a; border: 1px solid #3a414d; border-radius: 4px; padding: 5px 10px; color: #e3e8ef; }
QPushButton:hover { background: #343c48; }
QPushButton:checked { background: #2f6fb5; border-color: #4b8ad0; }
QPushButton:disabled { color: #6b7280; background: #23272e; }
QPushButton#primary { background: #2f6fb5; border-color: #4b8ad0; font-weight: bold; }
QPushButton#primary:disabled { background: #27384d; color: #7d8aa0; }
QLabel#hint { color: #98a2b3; font-size: 9pt; }
QLabel#title { color: #e8edf4; font-size: 13pt; font-weight: bold; }
QProgressBar { border: 1px solid #3a414d; border-radius: 4px; background: #1b1f25; text-align: center; height: 16px; }
QProgressBar::chunk { background: #3b82d6; border-radius: 3px; }
QTableWidget { background: #181b21; alternate-background-color: #1d2128; gridline-color: #2a2f37; }
QHeaderView::section { background: #232830; color: #aeb6c2; border: none; padding: 4px; }
QTabWidget::pane { border: 1px solid #2c323c; border-radius: 4px; }
QTabBar::tab { background: #20242b; color: #aeb6c2; padding: 6px 12px; border-top-left-radius: 4px;
               border-top-right-radius: 4px; }
QTabBar::tab:selected { background: #2c323c; color: #ffffff; }
QToolBar { background: #1a1e24; border-bottom: 1px solid #2c323c; spacing: 6px; padding: 4px; }
QStatusBar { background: #16191e; color: #98a2b3; }
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    for role, color in [(QPalette.Window, "#16191e"), (QPalette.WindowText, "#dde3ea"), (QPalette.Base, "#1b1f25"),
                        (QPalette.AlternateBase, "#20242b"), (QPalette.Text, "#dde3ea"), (QPalette.Button, "#2a303a"),
                        (QPalette.ButtonText, "#e3e8ef"), (QPalette.Highlight, "#2f6fb5"),
                        (QPalette.HighlightedText, "#ffffff"), (QPalette.ToolTipBase, "#2a303a"),
                        (QPalette.ToolTipText, "#e3e8ef")]:
        pal.setColor(role, QColor(color))
    app.setPalette(pal)
    app.setStyleSheet(STYLE)
