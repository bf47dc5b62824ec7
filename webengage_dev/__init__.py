"""Development tools, shipped beside the core package but not part of it: the WebEngage sandbox (a strict
local stand-in for the API) and the embedded demo warehouse (with `make airflow`'s stack). They need the
``sandbox`` extra (``pip install 'webengage-sync[sandbox]'``); the syncs never import them."""
