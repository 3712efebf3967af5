"""Small helpers every layer uses: atomic file writes, torch devices and autocast, terminal
progress, timestamps. Nothing here imports another part of lkseg except :mod:`lkseg.errors`."""
