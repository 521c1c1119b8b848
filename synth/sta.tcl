# OpenSTA script of the synthesis flow (synth/flow.py fills in the {{fields}}; run in the
# run folder).
# Ideal clock (no clock tree) and no wire-load model (the library has none): cell delays with
# pin loads. Ports are timed against the same clock, as if they came from and went to the
# flip-flops of a neighbouring unit: input and output delays {io_delay_ns} ns, inputs driven by
# {driving_cell}, outputs loaded with {load_pf} pF. Each report follows a `=== <group>` line.
read_liberty {liberty}
read_verilog netlist.v
link_design {top}
create_clock -name clk -period {period_ns} [get_ports {clock}]
set data_inputs [delete_from_list [all_inputs] [get_ports {clock}]]
set_input_delay {io_delay_ns} -clock clk $data_inputs
set_output_delay {io_delay_ns} -clock clk [all_outputs]
set_driving_cell -lib_cell {driving_cell} -pin Y $data_inputs
set_load {load_pf} [all_outputs]
set opts {{-path_delay max -digits 3 -fields {{fanout capacitance slew input_pins}}}}
puts "=== all"
report_checks {{*}}$opts
puts "=== reg2reg"
report_checks {{*}}$opts -from [all_registers -clock_pins] -to [all_registers -data_pins]
puts "=== in2reg"
report_checks {{*}}$opts -from $data_inputs -to [all_registers -data_pins]
puts "=== reg2out"
report_checks {{*}}$opts -from [all_registers -clock_pins] -to [all_outputs]
puts "=== in2out"
report_checks {{*}}$opts -from $data_inputs -to [all_outputs]
# Slews beyond the library's largest characterised input slew (1.2 ns) mean extrapolated delays.
set_max_transition 1.2 [current_design]
puts "=== electrical"
report_check_types -max_transition -all_violators
puts "=== end"
