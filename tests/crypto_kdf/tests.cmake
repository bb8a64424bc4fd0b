bk_add_test(crypto_kdf SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kdf.c LIBS PkgConfig::SODIUM)
