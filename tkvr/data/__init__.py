"""The data layer: dataset formats, class lists, sampling, video readers, transforms, loaders,
the toy world and tkvr prepare."""
