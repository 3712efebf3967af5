"""What the module adds to Slicer at startup: the bundled sample volumes in the Sample Data module and
the module's own terminology (the codes of its label tables) in the Terminologies module.

Calls Slicer; imported only by ``LargeKernelSeg.py``. The sources and codes are decided Slicer-free in
:mod:`.sampledata` and :mod:`.segments`.
"""

import logging

import slicer

from .sampledata import sample_sources
from .segments import TERMINOLOGY_FILE, own_terminology

log = logging.getLogger("LargeKernelSeg")


def load_terminology(terminologies=None):
    """Load the module's terminology file; returns its context name (already loaded: nothing to do)."""
    terminologies = terminologies or slicer.modules.terminologies.logic()
    context = own_terminology()[0]
    if not terminologies.IsTerminologyContextLoaded(context):
        if not terminologies.LoadTerminologyFromFile(str(TERMINOLOGY_FILE)):
            raise RuntimeError(f"Slicer could not load the terminology file {TERMINOLOGY_FILE}")
    return context


def register_sample_data():
    """Register the bundled sample volumes; returns how many."""
    import SampleData
    from lkseg.app import resources

    sample = resources.sample_ct()
    sources = sample_sources(sample.parent if sample else None)
    for source in sources:
        SampleData.SampleDataLogic.registerCustomSampleDataSource(**source)
    return len(sources)


def register_all():
    """At startup: each part on its own, so that one failing (e.g. no Sample Data module) leaves the other."""
    for what, step in (("the terminology", load_terminology), ("the sample data", register_sample_data)):
        try:
            step()
        except Exception:  # noqa: BLE001 - logged; the module works without either
            log.exception("LargeKernelSeg: adding %s to Slicer failed", what)
