{
  "targets": [
    {
      "target_name": "vfio_native",
      "sources": ["native/vfio_native.c", "native/virtio_blk_ring.c", "native/region_reads.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
