"""What every front end shares that is not a processing stage: the user's remembered choices
(:mod:`.settings`) and where the bundled sample images and models are (:mod:`.resources`)."""
