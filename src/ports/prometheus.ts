// Metrics history for candidate selection (SPEC §6.3).
export interface MetricsHistoryPort {
  /**
   * Evaluates an uptime query at `at` (Unix seconds); undefined when Prometheus
   * has no data for it. Throws IntegrationError when Prometheus cannot be asked.
   */
  uptime(query: string, at: number): Promise<number | undefined>;
}
