"""The notebook surface: magics (the only IPython importer), the live view and
its renderer. Nothing in the engine imports from here; ``%load_ext wfnb`` does."""
