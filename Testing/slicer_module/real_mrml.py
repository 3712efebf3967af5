"""A real MRML scene for tests, from the ``slicer-core`` wheel (MRML, vtkSegmentationCore and the Qt-free
module logics of 3D Slicer), set up the way Slicer's application sets up ``slicer.mrmlScene``.

The wheel has the scene, the nodes, the module logics and ``slicer/util.py`` but not Slicer's Qt side
(``slicer.app``, ``slicer.modules``, the subject hierarchy plugins). The fixture below supplies only
those missing pieces, each a few lines standing in for one named Slicer object; everything MRML does
(nodes, transforms, segmentation logic, label map import and export) is the real thing.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest


def import_slicer() -> Any:
    """slicer-core's ``slicer`` package; skips the calling test (module) when the wheel is not installed.
    (This folder is not called ``slicer``: ``slicer/__init__.py`` imports every ``slicer/`` folder on
    ``sys.path`` into its namespace.)"""
    pytest.importorskip("slicer_core", reason="needs the slicer-core wheel (real MRML)")
    import slicer

    return slicer


def _subject_hierarchy_plugin_logic(slicer: Any, scene: Any) -> list[tuple[Any, int]]:
    """Stands in for qSlicerSubjectHierarchyPluginLogic (Qt, not in the wheel): it gives every data node
    added to the scene an item under the scene item and drops the item when the node is removed
    (onNodeAdded / onNodeAboutToBeRemoved in Modules/Loadable/SubjectHierarchy/Widgets)."""
    from vtkmodules.util.misc import calldata_type
    from vtkmodules.util.vtkConstants import VTK_OBJECT

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    exclude = slicer.vtkMRMLSubjectHierarchyConstants.GetSubjectHierarchyExcludeFromTreeAttributeName()

    @calldata_type(VTK_OBJECT)
    def added(caller: Any, event: str, node: Any) -> None:
        if (node.IsA("vtkMRMLStorableNode") and not scene.IsImporting() and not node.GetHideFromEditors()
                and not node.GetAttribute(exclude) and not shNode.GetItemByDataNode(node)):
            shNode.CreateItem(shNode.GetSceneItemID(), node)

    @calldata_type(VTK_OBJECT)
    def removed(caller: Any, event: str, node: Any) -> None:
        if not scene.IsClosing() and not node.IsA("vtkMRMLSubjectHierarchyNode"):
            item = shNode.GetItemByDataNode(node)
            if item:
                shNode.RemoveItem(item, False, False)

    return [(scene, scene.AddObserver(scene.NodeAddedEvent, added)),
            (scene, scene.AddObserver(scene.NodeAboutToBeRemovedEvent, removed))]


@pytest.fixture
def mrml_scene(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A new ``vtkMRMLScene`` installed as ``slicer.mrmlScene``, with Slicer's application logic, the
    Colors, Subject Hierarchy, Segmentations and Volumes module logics and one slice view's composite
    node; ``slicer.modules.segmentations.logic()`` / ``.volumes.logic()`` return the real logics."""
    slicer = import_slicer()
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()  # what qSlicerCoreApplication creates and owns
    app.SetMRMLScene(scene)
    logics = {}
    # Colors: vtkSlicerColorLogic's base class, which makes the default colour tables (Labels, ...)
    # without reading Slicer's colour files (not in the wheel)
    for name, cls in (("Colors", slicer.vtkMRMLColorLogic),
                      ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("Volumes", slicer.vtkSlicerVolumesLogic)):
        logic = cls()  # as Slicer's module manager does for each loaded module
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name.lower()] = logic
    app.SetColorLogic(logics["colors"])
    observers = _subject_hierarchy_plugin_logic(slicer, scene)
    # stands in for the layout's Red slice view: setSliceViewerLayers() sets the composite nodes it finds
    scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName("Red")
    # stands in for slicer.modules (qSlicerModuleManager's modules, Qt): only .logic() is used
    modules = types.SimpleNamespace(**{name: types.SimpleNamespace(logic=lambda logic=logic: logic)
                                       for name, logic in logics.items()})
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)  # qSlicerCoreApplication sets it
    monkeypatch.setattr(slicer, "modules", modules, raising=False)
    yield scene
    for subject, tag in observers:
        subject.RemoveObserver(tag)
    scene.Clear(True)
