"""3D view: organ surfaces from the label map (vtkDiscreteFlyingEdges3D) in a QVTKRenderWindowInteractor.

The 3D view is optional: if VTK or its OpenGL context is unavailable (no GLX, ``LKSEG_VIEWER_NO_3D=1``)
:func:`make_volume_view` returns a plain placeholder and the rest of the viewer works unchanged.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel, QVBoxLayout, QWidget

from lkseg.viewer.state import ViewerState

log = logging.getLogger(__name__)


class Placeholder(QLabel):
    """Stands in for the 3D view when VTK cannot render here."""

    available = False

    def __init__(self, reason: str, parent: QWidget | None = None) -> None:
        super().__init__(f"3D view unavailable\n{reason}", parent)
        self.setAlignment(Qt.AlignCenter)
        self.setObjectName("volume_placeholder")

    def update_surfaces(self) -> int:
        return 0


class VolumeView(QWidget):
    """Organ surfaces coloured from the label table; :meth:`update_surfaces` rebuilds them."""

    available = True

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)
        import vtkmodules.vtkInteractionStyle  # noqa: F401
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
        from vtkmodules.vtkRenderingCore import vtkRenderer

        self.state = state
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.vtk_widget)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.05, 0.06, 0.08)
        self.renderer.SetBackground2(0.16, 0.18, 0.23)
        self.renderer.GradientBackgroundOn()
        self.vtk_widget.GetRenderWindow().AddRenderer(self.renderer)
        from vtkmodules.vtkRenderingCore import vtkTextActor

        title = vtkTextActor()
        title.SetInput("3D")
        title.GetTextProperty().SetFontSize(14)
        title.GetTextProperty().BoldOn()
        title.GetTextProperty().SetColor(0.5, 0.72, 1.0)
        title.SetDisplayPosition(8, 8)
        self.renderer.AddViewProp(title)
        self._actors: list = []
        self.vtk_widget.Initialize()
        self.setObjectName("volume_view")

    def update_surfaces(self) -> int:
        """Rebuild one smoothed surface per visible label present; returns how many were built."""
        from vtkmodules.util.numpy_support import numpy_to_vtk
        from vtkmodules.vtkCommonDataModel import vtkImageData
        from vtkmodules.vtkCommonMath import vtkMatrix4x4
        from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter
        from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        for a in self._actors:
            self.renderer.RemoveActor(a)
        self._actors = []
        st = self.state
        if st.labels is None or st.image is None or st.table is None:
            self.vtk_widget.GetRenderWindow().Render()
            return 0
        lab = np.ascontiguousarray(st.labels.astype(np.uint8))
        present = set(np.unique(lab).tolist()) - {0}
        data = vtkImageData()
        k, j, i = lab.shape
        data.SetDimensions(i, j, k)
        # voxel grid in index units; each actor carries the image's index->LPS matrix
        matrix = vtkMatrix4x4()
        m = st.image.ijk_to_lps()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, float(m[r][c]))
        arr = numpy_to_vtk(lab.reshape(-1), deep=True)
        data.GetPointData().SetScalars(arr)
        for label in st.table.labels:
            if label.value not in present or label.value in st.hidden:
                continue
            fe = vtkDiscreteFlyingEdges3D()
            fe.SetInputData(data)
            fe.SetValue(0, label.value)
            smooth = vtkWindowedSincPolyDataFilter()
            smooth.SetInputConnection(fe.GetOutputPort())
            smooth.SetNumberOfIterations(15)
            smooth.SetPassBand(0.05)
            smooth.NormalizeCoordinatesOn()
            mapper = vtkPolyDataMapper()
            mapper.SetInputConnection(smooth.GetOutputPort())
            mapper.ScalarVisibilityOff()
            actor = vtkActor()
            actor.SetMapper(mapper)
            actor.SetUserMatrix(matrix)
            actor.GetProperty().SetColor(*[c / 255.0 for c in label.color])
            actor.GetProperty().SetSpecular(0.3)
            self.renderer.AddActor(actor)
            self._actors.append(actor)
        self.renderer.ResetCamera()
        cam = self.renderer.GetActiveCamera()
        cam.SetViewUp(0, 0, 1)
        # anterior view (LPS: -y) turned a little, patient right on screen left like the slice views
        cam.SetPosition(*(np.array(cam.GetFocalPoint()) + np.array([0, -1, 0]) * cam.GetDistance()))
        cam.Azimuth(-25)
        cam.Elevation(20)
        cam.OrthogonalizeViewUp()
        self.renderer.ResetCamera()
        cam.Zoom(1.3)
        self.vtk_widget.GetRenderWindow().Render()
        return len(self._actors)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.vtk_widget.Finalize()
        super().closeEvent(event)


def make_volume_view(state: ViewerState, parent: QWidget | None = None) -> QWidget:
    """A :class:`VolumeView`, or a :class:`Placeholder` when VTK cannot be used here."""
    if os.environ.get("LKSEG_VIEWER_NO_3D"):
        return Placeholder("(disabled by LKSEG_VIEWER_NO_3D)", parent)
    try:
        return VolumeView(state, parent)
    except Exception as exc:  # VTK missing, no OpenGL context: keep the app usable
        log.warning("3D view disabled: %s", exc)
        return Placeholder(f"({exc})", parent)
