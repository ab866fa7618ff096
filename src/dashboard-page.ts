/** The dashboard's page (filled in with the dashboard itself). */
export interface DashboardPage {
  html: string;
  assets: Map<string, { type: string; body: string }>;
}

export async function dashboardPage(): Promise<DashboardPage> {
  return {
    html: "<!doctype html><title>fnrun</title><p>fnrun serve is running. The API is under /_fnrun/api/.</p>",
    assets: new Map(),
  };
}
