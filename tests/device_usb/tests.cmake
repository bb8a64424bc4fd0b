# The USB transport (device/usb.c) against the simulated unit
# (device/virtual/usbsim.c), across processes through umockdev's preload.
if(TARGET bk_virtual AND UMOCKDEV_FOUND)
  add_executable(usb_echo_server ${CMAKE_CURRENT_LIST_DIR}/usb_echo_server.c)
  target_include_directories(usb_echo_server PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(usb_echo_server PRIVATE bk_virtual)

  add_executable(usb_client ${CMAKE_CURRENT_LIST_DIR}/usb_client.c)
  target_include_directories(usb_client PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(usb_client PRIVATE bk_testlib)

  bk_add_script_test(device_usb_echo ${CMAKE_CURRENT_LIST_DIR}/run_usb_echo.sh TIMEOUT 120)
  bk_add_test(device_usb_sim SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_usbsim.c LIBS bk_virtual)
endif()
