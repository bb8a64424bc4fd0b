# The private-API client against the simulator, and the OpenAPI document.
if(TARGET aibo-cloudsim)
  bk_add_test(api SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_api.c
    LIBS PkgConfig::JANSSON PkgConfig::CURL TIMEOUT 120)
  add_dependencies(api aibo-cloudsim)
endif()
add_test(NAME api_openapi_document
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/openapi_check.py
          ${CMAKE_SOURCE_DIR}/libbackup/api/openapi.yaml)
bk_add_fuzz(api_decode ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_api_decode.c)
bk_add_script_test(api_openapi_checker_refuses ${CMAKE_CURRENT_LIST_DIR}/openapi_refuses.sh)
