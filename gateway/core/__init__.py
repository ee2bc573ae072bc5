"""The domain: ids, codecs, settings, errors, the types that cross layers. Imports nothing of
the project; everything else may import it."""
