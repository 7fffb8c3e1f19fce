//! libvirt lock-driver plugin; the driver table lands with the plugin issue.
