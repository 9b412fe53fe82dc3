"""tools/device/ncu_summary.py on a raw-page CSV laid out as Nsight Compute writes one (a header of
metric names, a row of units, a row per kernel; its log lines before them)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ncu_summary", ROOT / "tools" / "device" / "ncu_summary.py")
ncu_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ncu_summary)

HEADER = ["ID", "Kernel Name", "gpu__time_duration.sum", "dram__bytes_read.sum",
          "sm__warps_active.avg.pct_of_peak_sustained_active",
          "smsp__pcsamp_warps_issue_stalled_long_scoreboard", "smsp__pcsamp_warps_issue_stalled_barrier",
          "smsp__pcsamp_warps_issue_stalled_long_scoreboard_not_issued", "smsp__pcsamp_warps_issue_stalled_selected",
          "smsp__average_warp_latency_issue_stalled_barrier.pct"]
UNITS = ["", "", "nsecond", "byte", "%", "", "", "", "", "%"]


def write_csv(path: Path, rows) -> Path:
    quoted = [",".join(f'"{cell}"' for cell in row) for row in [HEADER, UNITS, *rows]]
    path.write_text("==PROF== Connected to process 1234\n" + "\n".join(quoted) + "\n")
    return path


def test_instructions_and_pipes_come_from_whichever_name_this_gpu_reports(tmp_path):
    csv_path = tmp_path / "ncu-tiled.csv"
    header = ["ID", "Kernel Name", "smsp__inst_executed.sum",
              "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
              "sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active"]
    rows = [header, ["", "", "inst", "%", "%"], ["0", "tiled_gemm_kernel<Sm75, 4, 8>", "12,500,000", "41.2", "9.5"]]
    csv_path.write_text("\n".join(",".join(f'"{cell}"' for cell in row) for row in rows) + "\n")
    text = ncu_summary.summarise(csv_path)
    assert "warp instructions executed     12.5 M" in text
    assert "tensor pipe % of peak          41.2 %" in text  # the second of its names
    assert "LSU pipe % of peak             9.5 %" in text
    assert "FMA pipe % of peak             not collected" in text


def test_each_kernel_gets_its_time_traffic_occupancy_and_top_stalls(tmp_path):
    csv_path = write_csv(tmp_path / "ncu-awq.csv", [
        ["0", "fused_gemm_kernel<Sm75, 1, 8>", "19,450", "96000000", "61.5", "300", "100", "5000", "700", "90"],
        ["1", "combine_kernel<256>", "2000", "1000", "12", "", "", "", "", ""]])
    text = ncu_summary.summarise(csv_path)
    first, second = text.split("ncu-awq: ")[1:]
    assert first.startswith("fused_gemm_kernel<Sm75, 1, 8>")
    assert "time                           19.45 us" in first
    assert "DRAM read                      96 MB" in first
    assert "occupancy achieved             61.5 %" in first
    # The sampled family names two stall reasons, the latency family one: the sampled one is used,
    # without its "not issued" variant and without "selected" (the issuing warp).
    assert "stalls (share): long_scoreboard 75%, barrier 25%" in first
    assert "DRAM read rate                 not collected" in first
    assert second.startswith("combine_kernel<256>") and "stalls" not in second


def test_the_per_issue_stall_family_is_read_too(tmp_path):
    csv_path = tmp_path / "ncu-attention.csv"
    header = ["Kernel Name", "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
              "smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio",
              "smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio"]
    rows = [header, ["", "", "", ""], ["decode_kernel<256, 2>", "2.0", "1.0", "1.0"]]
    csv_path.write_text("\n".join(",".join(f'"{cell}"' for cell in row) for row in rows) + "\n")
    assert "stalls (share): long_scoreboard 50%, math_pipe_throttle 25%, short_scoreboard 25%" in (
        ncu_summary.summarise(csv_path))


def test_a_run_that_profiled_nothing_says_so(tmp_path):
    empty = tmp_path / "ncu-moe.csv"
    empty.write_text("==ERROR== the profiler could not be initialised\n")
    assert "no kernel profiled" in ncu_summary.summarise(empty)


def test_hopper_names_of_dram_throughput_and_the_cache_hit_rates_are_read(tmp_path):
    """On an H100/H200 ncu names DRAM throughput gpu__dram_throughput (a profile at 7475f94 printed
    it as not collected under the older dram__ name)."""
    csv_path = tmp_path / "ncu-awq.csv"
    header = ["Kernel Name", "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
              "l1tex__t_sector_hit_rate.pct", "lts__t_sector_hit_rate.pct"]
    rows = [header, ["", "%", "%", "%"], ["fused_gemm_kernel<Sm75, 2, 8>", "43.58", "29.62", "4"]]
    csv_path.write_text("\n".join(",".join(f'"{cell}"' for cell in row) for row in rows) + "\n")
    text = ncu_summary.summarise(csv_path)
    assert "DRAM % of peak                 43.58 %" in text
    assert "L1 hit rate                    29.62 %" in text
    assert "L2 hit rate                    4 %" in text
    assert "L2 % of peak                   not collected" in text
