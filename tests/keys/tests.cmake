bk_add_script_test(keys_keygen ${CMAKE_CURRENT_LIST_DIR}/keygen.sh)
if(TARGET bk_virtual)
  bk_add_test(keys_pki SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pki.c LIBS bk_virtual)
endif()
