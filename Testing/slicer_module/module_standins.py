"""Import-time stand-ins for what ``LargeKernelSeg.py`` needs and the slicer-core wheel lacks: Slicer's
Qt side. Each is a few lines standing in for one named Slicer/Qt class; MRML, the module logics and
``slicer.util`` stay the real ones (real_mrml.py). ``install()`` puts them in place and imports the module.
"""

from __future__ import annotations

import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "LargeKernelSeg"


class Signals:
    """What the tests need of a PythonQt object's ``connect(signal, slot)``: slots kept per signal, and
    ``emit`` to fire them as Qt would."""

    def connect(self, signal, slot):
        self.__dict__.setdefault("_slots", {}).setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        import inspect

        for slot in self.__dict__.get("_slots", {}).get(signal, []):
            params = inspect.signature(slot).parameters.values()  # PythonQt drops what a slot does not take
            slot(*args[:len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])])


class QTimer(Signals):
    """Stands in for ``qt.QTimer``: never fires by itself; a test calls :meth:`fire` as the event loop would."""

    def __init__(self):
        self.interval, self.singleShot, self.active = 0, False, False

    def setInterval(self, ms):
        self.interval = ms

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def fire(self):
        if self.active:
            self.active = not self.singleShot
            self.emit("timeout()")


class Widget(Signals):
    """Stands in for the PythonQt wrapper of one widget of the .ui (``qt.QPushButton``, ``qt.QComboBox``,
    ``ctk.ctkPathLineEdit``, ...): its properties are plain attributes, combo items a list."""

    def __init__(self, cls, name):
        self.className, self.objectName = cls, name
        self.enabled, self.visible, self.text, self.plainText, self.currentPath = True, True, "", "", ""
        self.value, self.maximum, self.items, self.lines, self.pixmap = 0, 100, [], [], None

    count = property(lambda self: len(self.items))

    def clear(self):
        self.items = []

    def addItem(self, text, data=None):
        self.items.append([text, data, None])

    def setItemData(self, index, data, role):
        self.items[index][2] = data

    def itemData(self, index):
        return self.items[index][1]

    def appendPlainText(self, line):
        self.lines.append(line)

    def setPixmap(self, pixmap):
        self.pixmap = pixmap

    def click(self):
        self.emit("clicked(bool)", False)

    def setMRMLScene(self, scene):
        self.scene = scene


def load_ui(path):
    """Stands in for ``slicer.util.loadUI``: one :class:`Widget` per named widget of the real .ui file."""
    root = ET.parse(path).getroot()
    panel = Widget("qMRMLWidget", root.find("widget").get("name"))
    panel.children = {w.get("name"): Widget(w.get("class"), w.get("name")) for w in root.iter("widget")}
    return panel


def parameter_node_wrapper(cls):
    """Stands in for ``slicer.parameterNodeWrapper.parameterNodeWrapper``: the annotated fields read and
    write the scripted module node (node references for MRML types, text parameters for the rest)."""
    import slicer

    hints = typing.get_type_hints(cls)
    defaults = {name: getattr(cls, name, None) for name in hints}

    class Wrapped:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)

        def __getattr__(self, name):
            if name not in hints:
                raise AttributeError(name)
            kind, node = hints[name], self.parameterNode
            if isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode):
                return node.GetNodeReference(name)
            text = node.GetParameter(name)
            if not text:
                return defaults[name]
            return {bool: lambda t: t == "True", int: int}.get(kind, str)(text)

        def __setattr__(self, name, value):
            kind = hints[name]
            if isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode):
                self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                self.parameterNode.SetParameter(name, str(value))

        def connectGui(self, ui):  # the widget <-> parameter binding is Qt's; the tests set fields directly
            return object()

        def disconnectGui(self, tag):
            pass

        def AddObserver(self, *args):
            return self.parameterNode.AddObserver(*args)

        def RemoveObserver(self, *args):
            return self.parameterNode.RemoveObserver(*args)

    Wrapped.__name__ = cls.__name__
    return Wrapped


class ScriptedLoadableModule:
    """Stands in for ``slicer.ScriptedLoadableModule.ScriptedLoadableModule``."""

    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    """Stands in for ``ScriptedLoadableModuleWidget``: a parent with ``isEntered``, a layout, resourcePath."""

    def __init__(self, parent=None):
        self.parent = parent or types.SimpleNamespace(isEntered=True)
        self.layout = types.SimpleNamespace(addWidget=lambda widget: None)

    def setup(self):
        pass

    def resourcePath(self, filename):
        return str(MODULE_DIR / "Resources" / filename)


class ScriptedLoadableModuleLogic:
    """Stands in for ``ScriptedLoadableModuleLogic``: the parameter node is the scene's singleton
    ``vtkMRMLScriptedModuleNode`` tagged with the module name (created on first use)."""

    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        import slicer

        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetModuleName(self.moduleName)
            node = slicer.mrmlScene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Stands in for ``ScriptedLoadableModuleTest`` (a ``unittest.TestCase`` with ``delayDisplay``)."""

    def delayDisplay(self, message, msec=None):
        self.messages = [*getattr(self, "messages", []), message]


def install(monkeypatch):
    """Put the stand-ins in place (``qt``, ``slicer.app``, ``slicer.ScriptedLoadableModule``,
    ``slicer.parameterNodeWrapper``, ``loadUI``) and import ``LargeKernelSeg.py`` afresh."""
    import slicer

    qt = types.ModuleType("qt")  # stands in for PythonQt's qt module: the names the module uses
    qt.QTimer, qt.QPixmap = QTimer, lambda path: types.SimpleNamespace(path=path, scaledToWidth=lambda *a: path)
    qt.Qt = types.SimpleNamespace(ToolTipRole=3, SmoothTransformation=1)
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(slm, cls.__name__, cls)
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = parameter_node_wrapper
    pnw.Choice = pnw.WithinRange = lambda *args: None  # only annotate; the stand-in wrapper ignores them
    # stands in for qSlicerApplication: startup signal, version, event loop
    app = Signals()
    app.majorVersion, app.minorVersion, app.processEvents = 5, 10, lambda: None
    app.topLevelWidgets = lambda: []  # no main window: the self-test skips its panel part, as under ctest
    for name, module in (("qt", qt), ("slicer.ScriptedLoadableModule", slm), ("slicer.parameterNodeWrapper", pnw)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda panel: types.SimpleNamespace(**panel.children))
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    monkeypatch.delitem(sys.modules, "LargeKernelSeg", raising=False)
    import LargeKernelSeg

    return LargeKernelSeg
