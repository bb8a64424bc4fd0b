if(TARGET bk_virtual)
  bk_add_test(vdev_memgen SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_memgen.c LIBS bk_virtual)
endif()
