# Fault loops: allocation failure at every N and stream cuts at every byte
# through age decryption, archive reading, backup verify/extract, catalog
# writes and the device handshake (see test_faults.c to add a path).
if(TARGET bk_virtual)
  bk_add_test(faults SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_faults.c
    ${CMAKE_SOURCE_DIR}/tests/device/helpers.c
    LIBS bk_virtual PkgConfig::SQLITE TIMEOUT 600)
endif()
