# The s3:// backup store against s3rver (npm, tests/s3/package.json) behind a
# front that checks every SigV4 signature with botocore (s3front.py).
bk_add_test(s3_store SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_s3_store.c TIMEOUT 240)
set_property(TEST s3_store APPEND PROPERTY ENVIRONMENT
  "BK_S3_SERVERS=${CMAKE_CURRENT_LIST_DIR}/servers.sh")
if(TARGET bk-test-lab)
  bk_add_script_test(s3_cli ${CMAKE_CURRENT_LIST_DIR}/s3_cli.sh TIMEOUT 300)
  set_property(TEST s3_cli APPEND PROPERTY ENVIRONMENT "BK_TEST_LAB=$<TARGET_FILE:bk-test-lab>")
endif()
# Backup, restore, verify, backups rm and the repair job with the store on S3,
# against virtual units and the API simulator.
if(TARGET aibo-vdev AND TARGET aibo-cloudsim)
  bk_add_script_test(s3_jobs ${CMAKE_CURRENT_LIST_DIR}/s3_jobs.sh TIMEOUT 300)
endif()
