# The repair job (aibo-restore repair / resume / jobs / job) against virtual
# units and the API simulator on 127.0.0.1.
if(TARGET aibo-cloudsim AND TARGET aibo-vdev)
  bk_add_script_test(repair_cli ${CMAKE_CURRENT_LIST_DIR}/repair_cli.sh TIMEOUT 1800)
  # kill -9 at every step boundary and at random points inside transfers.
  bk_add_script_test(repair_crash ${CMAKE_CURRENT_LIST_DIR}/repair_crash.sh LABELS long TIMEOUT 3000)
  bk_add_script_test(repair_crash_quick ${CMAKE_CURRENT_LIST_DIR}/repair_crash_quick.sh TIMEOUT 900)
  # Unit power cuts and disconnects, service 5xx and dropped answers.
  bk_add_script_test(repair_faults ${CMAKE_CURRENT_LIST_DIR}/repair_faults.sh LABELS long TIMEOUT 1200)
  bk_add_script_test(repair_usb ${CMAKE_CURRENT_LIST_DIR}/repair_usb.sh TIMEOUT 900)
  bk_add_script_test(repair_parallel ${CMAKE_CURRENT_LIST_DIR}/repair_parallel.sh TIMEOUT 900)
endif()
