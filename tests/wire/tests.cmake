# Backups pulled from units and restored onto replacement units
# (libbackup/wire, device/virtual/memory_ops.c, backup and restore commands).
# One script, two halves: transfers, refusals, disconnects and killed
# commands; power losses of the unit and four units at once.
if(TARGET aibo-vdev AND TARGET aibo-restore)
  bk_add_script_test(wire_e2e ${CMAKE_CURRENT_LIST_DIR}/e2e.sh TIMEOUT 400)
  set_property(TEST wire_e2e APPEND PROPERTY ENVIRONMENT "BK_WIRE_PARTS=basic")
  bk_add_script_test(wire_faults ${CMAKE_CURRENT_LIST_DIR}/e2e.sh TIMEOUT 400)
  set_property(TEST wire_faults APPEND PROPERTY ENVIRONMENT "BK_WIRE_PARTS=faults")
  bk_add_script_test(wire_long ${CMAKE_CURRENT_LIST_DIR}/e2e.sh LABELS long TIMEOUT 3600)
  set_property(TEST wire_long APPEND PROPERTY ENVIRONMENT "BK_WIRE_PARTS=basic faults"
    "BK_WIRE_SIZE=256M")
endif()
if(TARGET bk_virtual)
  bk_add_test(wire SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_wire.c LIBS bk_virtual TIMEOUT 300)
endif()
