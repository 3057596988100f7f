"""The backup catalog: snapshots in repositories, their manifests, inventory and retention."""
