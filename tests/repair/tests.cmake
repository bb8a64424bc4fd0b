# The repair job (aibo-restore repair / resume / jobs / job) against virtual
# units and the API simulator on 127.0.0.1.
if(TARGET aibo-cloudsim AND TARGET aibo-vdev)
  bk_add_script_test(repair_cli ${CMAKE_CURRENT_LIST_DIR}/repair_cli.sh TIMEOUT 600)
endif()
