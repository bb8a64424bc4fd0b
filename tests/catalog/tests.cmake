bk_add_test(catalog SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_catalog.c LIBS PkgConfig::SQLITE)
