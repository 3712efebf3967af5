"""What the panel allows while work runs, and where a result may be written: plain decisions, no Slicer.

A segmentation runs in the background for seconds to minutes and a fine-tuning job for hours; while
they run, the inputs they were started with must stay as they were (the result belongs to the volume
that was segmented), and a second job must not start over the first. A segmentation node that holds
segments the user made or edited is never overwritten: the result goes into a new node instead (no
question to answer, nothing lost; the status line says so).
"""

from __future__ import annotations

from dataclasses import dataclass

#: widgets that choose what a segmentation runs on; frozen while it runs
RUN_INPUTS = ("inputVolumeSelector", "outputSegmentationSelector", "checkpointPathLineEdit",
              "recentCheckpointsComboBox", "deviceComboBox")
#: widgets that choose what a fine-tuning job runs on; frozen while one runs
JOB_INPUTS = ("datasetFolderPathLineEdit", "fineTuneStepsSpinBox", "fineTuneMinutesSpinBox", "fineTuneDeviceComboBox")

REUSE, NEW = "reuse", "new"


def control_states(segmenting: bool, job_running: bool, has_input: bool, has_result: bool,
                   job_has_best: bool = False) -> dict[str, bool]:
    """Widget name -> enabled, for the panel's state.

    The Segment button turns into Cancel while segmenting (so it stays enabled); exports read the
    result node, so they wait for the run to end; the checkpoint may not change under a fine-tuning
    job either (it is the job's starting point).
    """
    states = {name: not segmenting for name in RUN_INPUTS}
    states["applyButton"] = segmenting or has_input
    states["editInSegmentEditorButton"] = has_result and not segmenting
    states["exportToDatasetButton"] = has_result and not segmenting
    states["exportFileButton"] = has_result and not segmenting
    for name in JOB_INPUTS:
        states[name] = not job_running
    states["startFineTuneButton"] = not job_running
    states["cancelFineTuneButton"] = job_running
    states["loadResultButton"] = job_has_best
    return states


@dataclass(frozen=True)
class OutputChoice:
    """Where a result goes: ``REUSE`` the chosen node, or a ``NEW`` one; ``reason`` for the status line."""

    action: str
    reason: str = ""


def output_choice(node_name: str | None, segment_count: int, made_here: bool, unchanged: bool) -> OutputChoice:
    """Decide whether a result may replace the segments of the chosen output node.

    ``made_here``: the node holds a result this module wrote; ``unchanged``: its segments are still the
    ones written then (same ids, same voxels). Only an empty node or an untouched result of ours is
    reused; anything else would lose the user's work, so the result goes into a new node.
    """
    if node_name is None:
        return OutputChoice(NEW)
    if segment_count == 0:
        return OutputChoice(REUSE)
    if made_here and unchanged:
        return OutputChoice(REUSE)
    why = "was edited after it was made" if made_here else "holds segments made elsewhere"
    return OutputChoice(NEW, f"'{node_name}' {why}, so it was kept as it is and the result went into a new "
                             "segmentation node.")
