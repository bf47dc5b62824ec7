"""The run skeleton every sync shares: the run frame (:mod:`etl.engine.frame`), one delivery loop
(:mod:`etl.engine.delivery`) and one reject policy (:mod:`etl.engine.rejects`). A sync supplies only its
source, its pure preparation and what to checkpoint when WebEngage accepts or refuses a batch."""
