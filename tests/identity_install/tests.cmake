# IDENTITY_INSTALL: the device client (device/identity.c) against the virtual
# robot's handler (device/virtual/identity_ops.c), in process and through
# aibo-vdev serve.
if(TARGET bk_virtual AND TARGET aibo-vdev)
  bk_add_test(identity_install SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_identity_install.c
    LIBS bk_virtual TIMEOUT 120)
  set_property(TEST identity_install APPEND PROPERTY ENVIRONMENT
    "AIBO_VDEV=$<TARGET_FILE:aibo-vdev>")
endif()
