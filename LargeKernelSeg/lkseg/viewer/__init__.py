"""The standalone desktop viewer (PyQt5 + VTK); the only package that imports them.

``lkseg-viewer`` (:func:`lkseg.viewer.app.main`). The label-editing model
(:mod:`lkseg.viewer.editing`) is pure numpy and usable without Qt.
"""
