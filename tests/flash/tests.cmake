# Firmware flashing against the virtual unit (tests/flash).
if(TARGET bk_virtual)
  bk_add_test(flash SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_flash.c
    ${CMAKE_SOURCE_DIR}/tests/device/helpers.c LIBS bk_virtual TIMEOUT 180)
  bk_add_test(flash_long SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_flash_long.c
    ${CMAKE_SOURCE_DIR}/tests/device/helpers.c LIBS bk_virtual LABELS long TIMEOUT 600)
endif()

# End to end with aibo-vdev serve and aibo-restore firmware.
if(TARGET aibo-vdev)
  bk_add_script_test(flash_e2e ${CMAKE_CURRENT_LIST_DIR}/e2e.sh TIMEOUT 180)
endif()

# The benchmark program tests/bench/flash.sh runs (not a test).
if(TARGET bk_virtual)
  add_executable(bk-flash-bench ${CMAKE_CURRENT_LIST_DIR}/flash_bench.c)
  target_link_libraries(bk-flash-bench PRIVATE bk_virtual)
endif()
