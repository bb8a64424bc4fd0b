bk_add_test(util_core SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_util.c)
bk_add_test(util_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
